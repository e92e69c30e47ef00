/* Vinh Smart — public map of reports (GeoJSON without any personal data). */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("reports-config").textContent || "{}");
  var status = document.getElementById("map-status");
  if (!window.L) { return; }
  var m = cfg.map || {};
  var map = L.map("reports-map").setView([m.centerLat || 18.6796, m.centerLon || 105.6813], m.zoom || 12);
  if (m.tileUrl) { L.tileLayer(m.tileUrl, { attribution: m.tileAttribution || "" }).addTo(map); }
  if (m.wardsUrl) {
    fetch(m.wardsUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (gj) { L.geoJSON(gj, { style: { weight: 1, fillOpacity: 0.05 } }).addTo(map); })
      .catch(function () { /* optional */ });
  }
  fetch(cfg.reportsUrl, { credentials: "same-origin", headers: { Accept: "application/geo+json" } })
    .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
    .then(function (gj) {
      L.geoJSON(gj, {
        pointToLayer: function (f, latlng) {
          var open = f.properties.open311_status === "open";
          return L.circleMarker(latlng, { radius: 7, weight: 2, color: open ? "#c0392b" : "#1e8449", fillOpacity: 0.6 });
        },
        onEachFeature: function (f, layer) {
          var box = document.createElement("div");
          var h = document.createElement("strong");
          h.textContent = "#" + f.properties.id + " · " + f.properties.category_name;
          var s = document.createElement("p");
          s.textContent = f.properties.status_label;
          var d = document.createElement("p");
          d.textContent = (f.properties.description || "").slice(0, 200);
          box.appendChild(h); box.appendChild(s); box.appendChild(d);
          layer.bindPopup(box);
        }
      }).addTo(map);
      status.textContent = gj.features.length + " phản ánh / reports";
    })
    .catch(function () { status.textContent = "Không tải được dữ liệu / could not load"; });
})();
