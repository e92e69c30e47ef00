/* Vinh IOC — operators' dashboard: the live map of the six wards and the side panels.
 *
 * Configuration comes from <script type="application/json" id="ioc-config"> (no inline
 * JavaScript, so the page runs under a strict CSP `script-src 'self'`). The map works
 * offline: a tile layer is added only when a tile URL is configured (IOC_MAP__TILE_URL);
 * otherwise it shows the ward boundaries alone.
 */
(function () {
  "use strict";

  var WARD_COLOURS = ["#1f5fa8", "#b5441b", "#2a7d3f", "#7a3e9d", "#a0640b", "#0e7c86"];

  function readConfig() {
    var el = document.getElementById("ioc-config");
    if (!el) { return null; }
    try { return JSON.parse(el.textContent || "{}"); } catch (e) { return null; }
  }

  var cfg = readConfig();
  var mapEl = document.getElementById("map");
  if (!cfg || !mapEl || typeof L === "undefined") { return; }

  var messages = cfg.i18n || {};
  function msg(key) { return Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key; }

  var statusEl = document.getElementById("map-status");
  function setStatus(text, state) {
    if (statusEl) { statusEl.textContent = text; }
    mapEl.setAttribute("data-state", state);
  }

  var mapCfg = cfg.map || {};
  var map = L.map(mapEl, { zoomControl: true, keyboard: true }).setView(
    [mapCfg.centerLat, mapCfg.centerLon], mapCfg.zoom || 12
  );
  if (mapCfg.tileUrl) {
    L.tileLayer(mapCfg.tileUrl, { attribution: mapCfg.tileAttribution || "", maxZoom: 19 }).addTo(map);
  } else {
    mapEl.classList.add("map--offline");
  }

  function wardLabel(props) {
    if (cfg.lang === "en" && props.name_en) { return props.name_en; }
    return props.name || props.full_name || props.code || "?";
  }

  /* Names come from data: shown as text, never parsed as HTML. */
  function textElement(text) {
    var span = document.createElement("span");
    span.textContent = text;
    return span;
  }

  function wardTitle(props) {
    if (cfg.lang === "en" && props.name_en) { return props.name_en; }
    return props.full_name || props.name || "";
  }

  function addWardToList(list, props, layer) {
    var li = document.createElement("li");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "ward-list__item";
    button.textContent = wardTitle(props);
    button.setAttribute("data-ward-code", props.code || "");
    button.addEventListener("click", function () {
      map.fitBounds(layer.getBounds(), { padding: [24, 24] });
      mapEl.focus({ preventScroll: true });
    });
    li.appendChild(button);
    list.appendChild(li);
  }

  /* Where a ward's label goes: the centre of its largest part. A permanent tooltip bound to a
   * multipolygon would sit on its first part, which for Cửa Lò is an offshore island. */
  function ringArea(ring) {
    var area = 0;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i, i += 1) {
      area += (ring[j].lng + ring[i].lng) * (ring[j].lat - ring[i].lat);
    }
    return Math.abs(area / 2);
  }

  function labelPoint(featureLayer) {
    var latlngs = featureLayer.getLatLngs();
    var parts = L.LineUtil.isFlat(latlngs[0]) ? [latlngs] : latlngs;
    var best = null;
    var bestArea = -1;
    parts.forEach(function (rings) {
      var area = ringArea(rings[0]);
      if (area > bestArea) { bestArea = area; best = rings[0]; }
    });
    return L.PolyUtil.polygonCenter(best, map.options.crs);
  }

  function drawWards(collection) {
    var list = document.getElementById("ward-list");
    var index = 0;
    var layer = L.geoJSON(collection, {
      style: function () {
        var colour = WARD_COLOURS[index % WARD_COLOURS.length];
        index += 1;
        return { color: colour, weight: 2, opacity: 0.9, fillColor: colour, fillOpacity: 0.12 };
      },
      onEachFeature: function (feature, featureLayer) {
        var props = feature.properties || {};
        L.tooltip({ permanent: true, direction: "center", className: "ward-label", opacity: 1 })
          .setLatLng(labelPoint(featureLayer))
          .setContent(textElement(wardLabel(props)))
          .addTo(map);
        if (list) { addWardToList(list, props, featureLayer); }
      }
    }).addTo(map);
    var bounds = layer.getBounds();
    if (bounds.isValid()) { map.fitBounds(bounds, { padding: [16, 16] }); }
    var count = (collection.features || []).length;
    setStatus(count ? msg("map.loaded").replace("{count}", String(count)) : msg("map.no_wards"), count ? "ready" : "empty");
  }

  fetch(cfg.wardsUrl, { credentials: "same-origin", headers: { Accept: "application/geo+json, application/json" } })
    .then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    })
    .then(drawWards)
    .catch(function () { setStatus(msg("map.load_error"), "error"); });

  /* Panels that modules registered: each loads its HTML fragment from its own (same-origin) URL. */
  var panels = document.querySelectorAll("[data-panel-url]");
  Array.prototype.forEach.call(panels, function (panel) {
    var url = panel.getAttribute("data-panel-url") || "";
    var body = panel.querySelector("[data-panel-body]");
    if (!body || url.charAt(0) !== "/" || url.charAt(1) === "/") { return; }
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) { if (html.trim()) { body.innerHTML = html; } })
      .catch(function () { body.setAttribute("data-state", "error"); });
  });
})();
