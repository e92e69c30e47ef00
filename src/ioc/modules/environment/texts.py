"""The module's texts for the translation catalogue (Vietnamese first, English second)."""

from __future__ import annotations

VI: dict[str, str] = {
    "environment.panel.title": "Môi trường và ngập lụt",
    "environment.layer.air": "Trạm quan trắc không khí (VN_AQI)",
    "environment.layer.flood": "Trạm đo mực nước (cấp báo động)",
    "environment.air.title": "Không khí và ngập lụt hôm nay",
    "environment.air.lead": (
        "Chỉ số chất lượng không khí VN_AQI theo giờ (QĐ 1459/QĐ-TCMT) tại các trạm quan trắc tự động, "
        "và cảnh báo ngập lụt theo ba cấp báo động (QĐ 05/2020/QĐ-TTg) của sáu phường."
    ),
    "environment.air.heading": "Chất lượng không khí",
    "environment.air.map": "Bản đồ trạm quan trắc không khí",
    "environment.air.by_ward": "Theo phường",
    "environment.air.station": "Trạm",
    "environment.air.updated": "Cập nhật",
    "environment.air.no_data": "Chưa có số liệu",
    "environment.air.dominant": "Chất ô nhiễm chính",
    "environment.air.advice": "Khuyến nghị",
    "environment.air.legend": "Thang màu VN_AQI",
    "environment.flood.heading": "Cảnh báo ngập lụt",
    "environment.flood.ward": "Phường",
    "environment.flood.level": "Mức cảnh báo",
    "environment.flood.rain24": "Mưa 24 giờ",
    "environment.flood.gauges": "Trạm đo mực nước",
    "environment.flood.gauge": "Trạm",
    "environment.flood.water": "Mực nước",
    "environment.flood.rise": "Tốc độ lên",
    "environment.flood.heavy_rain": "Mưa rất to",
    "environment.flood.note": "Mực báo động theo QĐ 05/2020/QĐ-TTg; các trạm nội thị theo mức do UBND tỉnh quy định.",
    "environment.incidents.title": "Sự cố ô nhiễm",
    "environment.incidents.count": "Sự cố ô nhiễm ghi nhận 30 ngày qua",
    "environment.alert.0": "Bình thường",
    "environment.alert.1": "Báo động I",
    "environment.alert.2": "Báo động II",
    "environment.alert.3": "Báo động III",
}

EN: dict[str, str] = {
    "environment.panel.title": "Environment and flooding",
    "environment.layer.air": "Air quality stations (VN_AQI)",
    "environment.layer.flood": "Water-level gauges (alert level)",
    "environment.air.title": "Air and flooding today",
    "environment.air.lead": (
        "Hourly air quality index VN_AQI (QĐ 1459/QĐ-TCMT) at the automatic monitoring stations, "
        "and flood warnings on the three alert levels (QĐ 05/2020/QĐ-TTg) for the six wards."
    ),
    "environment.air.heading": "Air quality",
    "environment.air.map": "Map of the air monitoring stations",
    "environment.air.by_ward": "By ward",
    "environment.air.station": "Station",
    "environment.air.updated": "Updated",
    "environment.air.no_data": "No data yet",
    "environment.air.dominant": "Main pollutant",
    "environment.air.advice": "Advice",
    "environment.air.legend": "VN_AQI colour scale",
    "environment.flood.heading": "Flood warnings",
    "environment.flood.ward": "Ward",
    "environment.flood.level": "Warning level",
    "environment.flood.rain24": "Rain, 24 h",
    "environment.flood.gauges": "Water-level gauges",
    "environment.flood.gauge": "Gauge",
    "environment.flood.water": "Water level",
    "environment.flood.rise": "Rate of rise",
    "environment.flood.heavy_rain": "Very heavy rain",
    "environment.flood.note": (
        "Alert levels per QĐ 05/2020/QĐ-TTg; city gauges use the levels set by the provincial People's Committee."
    ),
    "environment.incidents.title": "Pollution incidents",
    "environment.incidents.count": "Pollution incidents recorded in the last 30 days",
    "environment.alert.0": "Normal",
    "environment.alert.1": "Alert level I",
    "environment.alert.2": "Alert level II",
    "environment.alert.3": "Alert level III",
}

#: What people in a ward should do at each flood warning level (shown with the ward's status).
FLOOD_ADVICE = {
    "vi": {
        0: "Không có cảnh báo ngập lụt.",
        1: "Theo dõi thông tin; chuẩn bị kê cao đồ đạc ở vùng trũng ven sông.",
        2: "Hạn chế đi lại qua vùng trũng, ngầm tràn; di chuyển tài sản lên cao; sẵn sàng sơ tán khi có lệnh.",
        3: "Nguy hiểm: thực hiện sơ tán theo hướng dẫn của chính quyền phường; không qua vùng nước chảy xiết.",
    },
    "en": {
        0: "No flood warning.",
        1: "Follow the news; get ready to raise belongings in low-lying riverside areas.",
        2: "Avoid low-lying areas and flooded crossings; move belongings up; be ready to evacuate when told.",
        3: "Danger: evacuate as the ward authorities direct; never cross fast-flowing water.",
    },
}


def alert_label(level: int, lang: str) -> str:
    return (EN if lang == "en" else VI).get(f"environment.alert.{level}", str(level))
