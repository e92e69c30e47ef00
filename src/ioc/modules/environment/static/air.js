/* Vinh Smart — air quality and flood warnings map: wards tinted by their worst station, stations in
   their VN_AQI band colours, flood-prone zones and gauges by alert level. No personal data. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("env-config").textContent || "{}");
  var status = document.getElementById("map-status");
  if (!window.L) { return; }
  var en = cfg.lang === "en";
  var m = cfg.map || {};
  var map = L.map("env-map").setView([m.centerLat || 18.6796, m.centerLon || 105.6813], m.zoom || 12);
  if (m.tileUrl) { L.tileLayer(m.tileUrl, { attribution: m.tileAttribution || "" }).addTo(map); }
  var wardAir = cfg.wardAir || {};
  function text(tag, value) { var el = document.createElement(tag); el.textContent = value; return el; }
  if (m.wardsUrl) {
    fetch(m.wardsUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (gj) {
        L.geoJSON(gj, {
          style: function (f) {
            var colour = wardAir[f.properties.code];
            return { weight: 1, color: "#335", fillColor: colour || "#888", fillOpacity: colour ? 0.18 : 0.04 };
          },
          onEachFeature: function (f, layer) { layer.bindTooltip(f.properties.name || f.properties.code); }
        }).addTo(map);
      }).catch(function () { /* the list below says it all */ });
  }
  var alertColour = ["#1e8449", "#f1c40f", "#e67e22", "#c0392b"];
  var gaugeLevel = {};
  (cfg.gauges || []).forEach(function (g) {
    if (g.code) { gaugeLevel[g.code] = g.alert_level; }
    if (g.lat == null || g.lon == null) { return; }
    var marker = L.circleMarker([g.lat, g.lon], { radius: 6, weight: 2, color: "#0b2e4f", fillColor: alertColour[g.alert_level] || "#888", fillOpacity: 0.9 });
    var box = document.createElement("div");
    box.appendChild(text("strong", g.name));
    box.appendChild(text("p", (g.level_m != null ? g.level_m.toFixed(2) + " m · " : "") + g.alert_label));
    marker.bindPopup(box).addTo(map);
  });
  if (cfg.zonesUrl) {
    fetch(cfg.zonesUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (gj) {
        L.geoJSON(gj, {
          style: function (f) {
            var level = Math.max.apply(null, (f.properties.gauges || []).map(function (c) { return gaugeLevel[c] || 0; }).concat([0]));
            return { weight: 1, dashArray: "4", color: alertColour[level], fillColor: alertColour[level], fillOpacity: level ? 0.35 : 0.08 };
          },
          onEachFeature: function (f, layer) { layer.bindTooltip(en ? (f.properties.name_en || f.properties.name) : f.properties.name); }
        }).addTo(map);
      }).catch(function () { /* optional */ });
  }
  var shown = 0;
  (cfg.stations || []).forEach(function (s) {
    if (s.lat == null || s.lon == null) { return; }
    var colour = s.band ? s.band.colour : "#999";
    var marker = L.circleMarker([s.lat, s.lon], { radius: 11, weight: 2, color: "#1b2330", fillColor: colour, fillOpacity: 0.95 });
    var box = document.createElement("div");
    box.appendChild(text("strong", s.name));
    box.appendChild(text("p", s.aqi != null ? "VN_AQI " + s.aqi + " · " + s.band.name : (en ? "No data yet" : "Chưa có số liệu")));
    if (s.band) { box.appendChild(text("p", s.band.advice)); }
    marker.bindPopup(box).addTo(map);
    if (s.aqi != null) { marker.bindTooltip(String(s.aqi), { permanent: true, direction: "center", className: "aqi-label" }); }
    shown += 1;
  });
  status.textContent = shown + (en ? " air stations" : " trạm quan trắc không khí");
})();
