"""Monthly and quarterly socio-economic reports: XLSX (tables and charts) and PDF, kept with history.

A report is built from the KPI definitions (each KPI computed over the report's period, with
its trend from the stored values), every measure the modules registered (this period and the
previous one) and the lineage of each figure. The PDF embeds DejaVu Sans (``fonts/``, Bitstream
Vera licence), which covers Vietnamese.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

from fpdf import FPDF
from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.auth import Principal
from ioc.core.db import utcnow

from .compute import Resolver, compute, status_of, trend
from .definitions import load_definitions
from .models import KpiValue, SocioEconomicReport
from .periods import Period, period_of, previous
from .timezone import VN

FONTS = Path(__file__).resolve().parent / "fonts"
SIGN = {">=": "≥", "<=": "≤"}
KINDS = {"monthly": "month", "quarterly": "quarter"}
STATUS_VI = {
    "on_track": "Đạt / đúng tiến độ",
    "at_risk": "Có nguy cơ",
    "off_track": "Chậm tiến độ",
    "no_data": "Chưa có số liệu",
}
STATUS_FILL = {"on_track": "C6EFCE", "at_risk": "FFEB9C", "off_track": "FFC7CE", "no_data": "EDEDED"}
AREA_VI = {
    "digital-government": "Chính quyền số",
    "health": "Y tế",
    "education": "Giáo dục",
    "security-traffic": "An ninh trật tự, giao thông",
    "tourism": "Du lịch",
    "urban-land": "Đô thị, đất đai",
    "environment": "Môi trường",
}


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    return text.replace(",", " ").replace(".", ",")


def build_summary(session: Session, resolver: Resolver, period: Period) -> dict[str, Any]:
    """The figures of a report over ``period``: KPIs with trend and lineage, and every registered measure."""
    kpis = []
    for kpi in load_definitions().values():
        c = compute(session, resolver, kpi, period)
        stored = session.scalars(
            select(KpiValue)
            .where(KpiValue.kpi_id == kpi.id, KpiValue.ward_code == "", KpiValue.period_end < period.start)
            .order_by(KpiValue.period_start.desc())
            .limit(11)
        )
        points = sorted(
            (Period(r.period_start, r.period_end, r.period), r.value) for r in stored if r.value is not None
        )
        if c.value is not None:
            points.append((period, c.value))
        t = trend(points, kpi, period.end)
        kpis.append(
            {
                "id": kpi.id,
                "number": kpi.number,
                "area": kpi.area,
                "name_vi": kpi.name_vi,
                "name_en": kpi.name_en,
                "target": kpi.target,
                "comparison": kpi.comparison,
                "unit": kpi.unit,
                "value": c.value,
                "gap": None if c.value is None else round(kpi.target - c.value, 2),
                "status": status_of(kpi, c.value, t),
                "owner": kpi.owner,
                "formula": kpi.formula,
                "inputs": [
                    {
                        "measure": i.measure,
                        "value": i.value,
                        "source": i.source,
                        "module": i.module,
                        "rows": i.row_count,
                    }
                    for i in (c.numerator, c.denominator)
                    if i is not None
                ],
                "series": [{"period": p.label, "value": v} for p, v in points[-12:]],
            }
        )
    before = previous(period)
    measures: list[dict[str, Any]] = []
    for name in sorted(resolver.measures):
        m = resolver.measures[name]
        try:
            now_value = m.fn(session, period.start, period.end, None)
            before_value = m.fn(session, before.start, before.end, None)
        except Exception as exc:  # one module's failing measure must not sink the whole report
            measures.append({"name": name, "unit": m.unit, "value": None, "previous": None, "error": repr(exc)[:200]})
            continue
        measures.append({"name": name, "unit": m.unit, "value": now_value, "previous": before_value})
    return {
        "kind": "monthly" if period.kind == "month" else "quarterly",
        "label": period.label,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "generated_at": utcnow().isoformat(),
        "kpis": kpis,
        "measures": measures,
    }


def _title(summary: dict[str, Any]) -> str:
    start = date.fromisoformat(summary["start"])
    if summary["kind"] == "monthly":
        return f"Báo cáo kinh tế – xã hội tháng {start.month:02d}/{start.year}"
    return f"Báo cáo kinh tế – xã hội quý {(start.month - 1) // 3 + 1}/{start.year}"


def _stamp(summary: dict[str, Any]) -> str:
    return str(summary["generated_at"])[:16].replace("T", " ")


def render_xlsx(summary: dict[str, Any]) -> bytes:
    """The report as a workbook: summary with a bar chart, trends with a line chart, measures, lineage."""
    book = Workbook()
    active = book.active
    assert isinstance(active, Worksheet)
    ws: Worksheet = active
    ws.title = "Tổng hợp"
    ws.append([_title(summary)])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(
        [f"Kỳ: {summary['start']} – {summary['end']} · Lập lúc {summary['generated_at'][:16].replace('T', ' ')} UTC"]
    )
    ws.append([])
    header = ["STT", "Chỉ tiêu", "Lĩnh vực", "Mục tiêu", "Thực hiện", "Chênh lệch", "Trạng thái", "Đơn vị", "Chủ trì"]
    ws.append(header)
    for cell in ws[4]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for k in summary["kpis"]:
        ws.append(
            [
                k["number"] or "",
                k["name_vi"],
                AREA_VI.get(k["area"], k["area"]),
                k["target"],
                k["value"],
                k["gap"],
                STATUS_VI[k["status"]],
                k["unit"],
                k["owner"],
            ]
        )
        ws.cell(ws.max_row, 7).fill = PatternFill("solid", fgColor=STATUS_FILL[k["status"]])
    last = ws.max_row
    for column, width in zip("ABCDEFGHI", (6, 60, 24, 10, 10, 11, 20, 8, 14), strict=True):
        ws.column_dimensions[column].width = width
    for row in ws.iter_rows(min_row=5, max_row=last, min_col=2, max_col=2):
        row[0].alignment = Alignment(wrap_text=True, vertical="top")
    chart = BarChart()
    chart.type = "bar"
    chart.title = "Thực hiện so với mục tiêu (%)"
    chart.y_axis.title = "%"
    chart.add_data(Reference(ws, min_col=4, max_col=5, min_row=4, max_row=last), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=1, min_row=5, max_row=last))
    chart.height, chart.width = 12, 22
    ws.add_chart(chart, "K4")

    trends = book.create_sheet("Xu hướng")
    assert isinstance(trends, Worksheet)
    labels = sorted({p["period"] for k in summary["kpis"] for p in k["series"]})
    trends.append(["Chỉ tiêu", *labels])
    for k in summary["kpis"]:
        values = {p["period"]: p["value"] for p in k["series"]}
        trends.append([k["id"], *[values.get(label) for label in labels]])
    for cell in trends[1]:
        cell.font = Font(bold=True)
    trends.column_dimensions["A"].width = 28
    if labels:
        line = LineChart()
        line.title = "Xu hướng các chỉ tiêu chính quyền số (%)"
        rows = min(trends.max_row, 4)
        for r in range(2, rows + 1):
            line.add_data(
                Reference(trends, min_col=1, max_col=len(labels) + 1, min_row=r, max_row=r),
                from_rows=True,
                titles_from_data=True,
            )
        line.set_categories(Reference(trends, min_col=2, max_col=len(labels) + 1, min_row=1, max_row=1))
        line.height, line.width = 10, 22
        trends.add_chart(line, f"A{trends.max_row + 3}")

    measures = book.create_sheet("Chỉ số")
    measures.append(["Chỉ số (measure)", "Đơn vị", "Kỳ này", "Kỳ trước"])
    for cell in measures[1]:
        cell.font = Font(bold=True)
    for m in summary["measures"]:
        measures.append([m["name"], m["unit"], m["value"], m["previous"]])
    measures.column_dimensions["A"].width = 42

    lineage = book.create_sheet("Nguồn")
    lineage.append(["Chỉ tiêu", "Công thức", "Đầu vào", "Giá trị", "Nguồn", "Số dòng nguồn"])
    for cell in lineage[1]:
        cell.font = Font(bold=True)
    for k in summary["kpis"]:
        for i in k["inputs"]:
            source = (
                f"mô-đun {i['module']}"
                if i["source"] == "registry"
                else ("nhập số liệu" if i["source"] == "import" else "chưa có")
            )
            lineage.append([k["id"], k["formula"], i["measure"], i["value"], source, i["rows"]])
    lineage.column_dimensions["A"].width = 26
    lineage.column_dimensions["B"].width = 60
    lineage.column_dimensions["C"].width = 40
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


class _Pdf(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", size=8)
        self.cell(0, 8, f"Vinh IOC — Trung tâm điều hành đô thị thông minh · trang {self.page_no()}", align="C")


def render_pdf(summary: dict[str, Any]) -> bytes:
    """The report as a PDF (A4 landscape) with the KPI table and a bar chart, in Vietnamese."""
    pdf = _Pdf(orientation="L", unit="mm", format="A4")
    pdf.add_font("DejaVu", "", str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_title(_title(summary))
    pdf.set_author("Vinh IOC")
    pdf.set_auto_page_break(True, 15)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 16)
    pdf.cell(0, 10, _title(summary), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=9)
    pdf.cell(
        0,
        6,
        f"Kỳ báo cáo: {summary['start']} – {summary['end']} · lập lúc {_stamp(summary)} UTC",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(2)
    widths = (10, 120, 22, 22, 22, 45, 30)
    pdf.set_font("DejaVu", "B", 9)
    pdf.set_fill_color(221, 235, 247)
    for text, w in zip(
        ("STT", "Chỉ tiêu", "Mục tiêu", "Thực hiện", "Chênh lệch", "Trạng thái", "Chủ trì"), widths, strict=True
    ):
        pdf.cell(w, 7, text, border=1, fill=True)
    pdf.ln()
    pdf.set_font("DejaVu", size=8)
    for k in summary["kpis"]:
        fill = STATUS_FILL[k["status"]]
        pdf.cell(widths[0], 6, str(k["number"] or ""), border=1)
        name = k["name_vi"] if len(k["name_vi"]) <= 78 else k["name_vi"][:76] + "…"
        pdf.cell(widths[1], 6, name, border=1)
        pdf.cell(
            widths[2], 6, f"{SIGN.get(k['comparison'], k['comparison'])} {_fmt(k['target'], 0)}", border=1, align="R"
        )
        pdf.cell(widths[3], 6, _fmt(k["value"]), border=1, align="R")
        pdf.cell(widths[4], 6, _fmt(k["gap"]), border=1, align="R")
        pdf.set_fill_color(int(fill[0:2], 16), int(fill[2:4], 16), int(fill[4:6], 16))
        pdf.cell(widths[5], 6, STATUS_VI[k["status"]], border=1, fill=True)
        pdf.cell(widths[6], 6, k["owner"], border=1)
        pdf.ln()
    # Bar chart: actual (bar) against target (tick) for the KPIs in %.
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 8, "Thực hiện so với mục tiêu (%)", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=8)
    x0, y, scale = 95.0, pdf.get_y() + 2, 1.6
    for k in summary["kpis"]:
        pdf.set_xy(10, y)
        pdf.cell(84, 6, (k["name_vi"][:52] + "…") if len(k["name_vi"]) > 53 else k["name_vi"])
        value = max(0.0, min(100.0, k["value"] or 0.0))
        fill = STATUS_FILL[k["status"]]
        pdf.set_fill_color(int(fill[0:2], 16), int(fill[2:4], 16), int(fill[4:6], 16))
        pdf.rect(x0, y + 1, value * scale, 4, style="DF")
        target_x = x0 + min(100.0, k["target"]) * scale
        pdf.set_draw_color(200, 30, 30)
        pdf.line(target_x, y, target_x, y + 6)
        pdf.set_draw_color(0, 0, 0)
        pdf.set_xy(x0 + 100 * scale + 3, y)
        pdf.cell(30, 6, f"{_fmt(k['value'])} / {_fmt(k['target'], 0)}")
        y += 7
    pdf.set_y(y + 4)
    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 8, "Các chỉ số theo dõi (từ các mô-đun)", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=8)
    for m in summary["measures"]:
        pdf.cell(110, 5, m["name"], border="B")
        pdf.cell(30, 5, m["unit"] or "", border="B")
        pdf.cell(35, 5, _fmt(m["value"], 2), border="B", align="R")
        pdf.cell(35, 5, _fmt(m["previous"], 2), border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def generate(
    session: Session,
    resolver: Resolver,
    kind: str,
    period: Period,
    *,
    principal: Principal | None = None,
    scheduled: bool = False,
) -> SocioEconomicReport | None:
    """Build, render and keep a report. A scheduled one is made once per period (None if it exists)."""
    key = f"{kind}:{period.label}" if scheduled else None
    if (
        key
        and session.scalar(select(SocioEconomicReport.id).where(SocioEconomicReport.schedule_key == key)) is not None
    ):
        return None
    summary = build_summary(session, resolver, period)
    report = SocioEconomicReport(
        kind=kind,
        label=period.label,
        period_start=period.start,
        period_end=period.end,
        trigger="schedule" if scheduled else "on_demand",
        schedule_key=key,
        created_by=principal.name if principal else "system",
        created_at=utcnow(),
        summary=summary,
        xlsx=render_xlsx(summary),
        pdf=render_pdf(summary),
    )
    try:
        with session.begin_nested():
            session.add(report)
    except IntegrityError:
        return None  # another worker made the scheduled report meanwhile
    audit.record(
        session,
        principal,
        "kpi.report.generate",
        "kpi_report",
        report.id,
        after={"kind": kind, "period": period.label, "trigger": report.trigger},
    )
    return report


def due_periods(on: date | None = None) -> list[tuple[str, Period]]:
    """The reports the schedule owes: last month's and last quarter's, once they have ended."""
    today = on or utcnow().astimezone(VN).date()
    return [(kind, previous(period_of(today, unit))) for kind, unit in KINDS.items()]
