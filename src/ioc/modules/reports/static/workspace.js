/* Officers' report page: workflow actions through the JSON API, with the page's CSRF token. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("reports-config").textContent || "{}");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var out = document.getElementById("action-status");

  function post(path, body) {
    return fetch(cfg.api + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) { throw new Error(data.detail || ("HTTP " + r.status)); }
        return data;
      });
    });
  }
  function done() { window.location.reload(); }
  function fail(err) { if (out) { out.textContent = err.message; out.className = "notice notice--error"; } }
  function value(form, name) { var el = form.elements[name]; return el && el.value.trim() ? el.value.trim() : null; }

  var tf = document.getElementById("transition-form");
  if (tf) {
    tf.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = { status: value(tf, "status") };
      ["note", "internal_note", "responsible_unit"].forEach(function (k) { if (value(tf, k)) { body[k] = value(tf, k); } });
      if (value(tf, "duplicate_of")) { body.duplicate_of = parseInt(value(tf, "duplicate_of"), 10); }
      post("/transition", body).then(done).catch(fail);
    });
  }
  var rf = document.getElementById("route-form");
  if (rf) {
    rf.addEventListener("submit", function (e) {
      e.preventDefault();
      post("/route", { agency_id: value(rf, "agency_id") }).then(done).catch(fail);
    });
  }
  var af = document.getElementById("abuse-form");
  if (af) {
    af.addEventListener("submit", function (e) {
      e.preventDefault();
      var flag = af.querySelector("button").getAttribute("data-abuse") === "true";
      post("/abuse", { abuse: flag }).then(done).catch(fail);
    });
  }
  var reveal = document.getElementById("reveal");
  if (reveal) {
    reveal.addEventListener("click", function () {
      fetch(cfg.api + "/reporter", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (p) {
          document.getElementById("reporter").textContent = [p.name || "—", p.phone || "—", p.email || "—"].join(" · ");
          reveal.hidden = true;
        }).catch(fail);
    });
  }
  if (window.L && cfg.lat !== null && document.getElementById("detail-map")) {
    var m = cfg.map || {};
    var map = L.map("detail-map").setView([cfg.lat, cfg.lon], 16);
    if (m.tileUrl) { L.tileLayer(m.tileUrl, { attribution: m.tileAttribution || "" }).addTo(map); }
    L.marker([cfg.lat, cfg.lon]).addTo(map);
  }
})();
