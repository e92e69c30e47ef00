/* Vinh IOC — operators' dashboard: the live map of the six wards, the layers that modules
 * register, the live alarm feed, the KPI strip and the modules' panels.
 *
 * Configuration comes from <script type="application/json" id="ioc-config"> (no inline
 * JavaScript, so the page runs under a strict CSP `script-src 'self'`). The map works
 * offline: a tile layer is added only when a tile URL is configured (IOC_MAP__TILE_URL);
 * otherwise it shows the ward boundaries alone.
 *
 * Layers are data: each is a GeoJSON FeatureCollection of points whose properties carry
 * label, colour, status and optionally ward and time (docs/MODULES.md, "Map layers"). They are
 * drawn as circle markers in their colour, clustered (map-clusters.js), filtered by ward and
 * time, and fetched again when an event of one of the layer's topics arrives on the event
 * stream (event-stream.js). When every layer has been fetched once the page sets
 * data-layers="ready" on the map and the performance mark "ioc:layers-loaded".
 */
(function () {
  "use strict";

  var WARD_COLOURS = ["#1f5fa8", "#b5441b", "#2a7d3f", "#7a3e9d", "#a0640b", "#0e7c86"];
  var RELOAD_DELAY_MS = 400;

  function readConfig() {
    var el = document.getElementById("ioc-config");
    if (!el) { return null; }
    try { return JSON.parse(el.textContent || "{}"); } catch (e) { return null; }
  }

  var cfg = readConfig();
  var mapEl = document.getElementById("map");
  if (!cfg || !mapEl || typeof L === "undefined") { return; }

  var messages = cfg.i18n || {};
  function msg(key, params) {
    var text = Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key;
    Object.keys(params || {}).forEach(function (name) { text = text.replace("{" + name + "}", String(params[name])); });
    return text;
  }
  var locale = cfg.lang === "en" ? "en-GB" : "vi-VN";
  var timeFormat = new Intl.DateTimeFormat(locale, {
    timeZone: cfg.timeZone || "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit", hourCycle: "h23"
  });
  /* "14:05 04/12" in Vietnam's time, whatever the browser's zone. */
  function formatTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return ""; }
    var parts = {};
    timeFormat.formatToParts(d).forEach(function (part) { parts[part.type] = part.value; });
    return parts.hour + ":" + parts.minute + " " + parts.day + "/" + parts.month;
  }
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") || "" : "";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function getJson(url, accept) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: accept || "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  /* ------------------------------------------------------------------ map and wards */

  var statusEl = document.getElementById("map-status");
  function setStatus(text, state) {
    if (statusEl) { statusEl.textContent = text; }
    mapEl.setAttribute("data-state", state);
  }

  var mapCfg = cfg.map || {};
  var map = L.map(mapEl, { zoomControl: true, keyboard: true }).setView(
    [mapCfg.centerLat, mapCfg.centerLon], mapCfg.zoom || 12
  );
  // Leaflet's default prefix links to its website: the product loads and links nothing outside.
  map.attributionControl.setPrefix("Leaflet");
  if (mapCfg.tileUrl) {
    L.tileLayer(mapCfg.tileUrl, { attribution: mapCfg.tileAttribution || "", maxZoom: 19 }).addTo(map);
  } else {
    mapEl.classList.add("map--offline");
  }

  var wards = {};  // code -> { name, layer, rings: [[ [lng, lat], ... ]] }

  function wardLabel(props) {
    if (cfg.lang === "en" && props.name_en) { return props.name_en; }
    return props.name || props.full_name || props.code || "?";
  }

  function wardTitle(props) {
    if (cfg.lang === "en" && props.name_en) { return props.name_en; }
    return props.full_name || props.name || "";
  }

  function wardName(code) {
    return code && wards[code] ? wards[code].name : (code || msg("dashboard.ward_unknown"));
  }

  function textElement(text) { return el("span", "", text); }

  function addWardToList(list, props, layer) {
    var li = document.createElement("li");
    var button = el("button", "ward-list__item", wardTitle(props));
    button.type = "button";
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

  /* Outer rings of a Polygon or MultiPolygon geometry, as [lng, lat] arrays. */
  function outerRings(geometry) {
    if (!geometry) { return []; }
    if (geometry.type === "Polygon") { return [geometry.coordinates[0]]; }
    if (geometry.type === "MultiPolygon") { return geometry.coordinates.map(function (p) { return p[0]; }); }
    return [];
  }

  function inRing(lng, lat, ring) {
    var inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i, i += 1) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > lat) !== (yj > lat) && lng < (xj - xi) * (lat - yi) / (yj - yi) + xi) { inside = !inside; }
    }
    return inside;
  }

  function inWard(latlng, code) {
    var ward = wards[code];
    if (!ward) { return false; }
    return ward.rings.some(function (ring) { return inRing(latlng.lng, latlng.lat, ring); });
  }

  var wardSelect = document.getElementById("filter-ward");
  var timeSelect = document.getElementById("filter-time");

  function drawWards(collection) {
    var list = document.getElementById("ward-list");
    var index = 0;
    var layer = L.geoJSON(collection, {
      style: function () {
        var colour = WARD_COLOURS[index % WARD_COLOURS.length];
        index += 1;
        return { color: colour, weight: 2, opacity: 0.9, fillColor: colour, fillOpacity: 0.1 };
      },
      onEachFeature: function (feature, featureLayer) {
        var props = feature.properties || {};
        wards[props.code] = { name: wardTitle(props), layer: featureLayer, rings: outerRings(feature.geometry) };
        L.tooltip({ permanent: true, direction: "center", className: "ward-label", opacity: 1 })
          .setLatLng(labelPoint(featureLayer))
          .setContent(textElement(wardLabel(props)))
          .addTo(map);
        if (list) { addWardToList(list, props, featureLayer); }
        if (wardSelect) {
          var option = el("option", "", wardTitle(props));
          option.value = props.code || "";
          wardSelect.appendChild(option);
        }
      }
    }).addTo(map);
    layer.bringToBack();
    var bounds = layer.getBounds();
    if (bounds.isValid()) { map.fitBounds(bounds, { padding: [16, 16] }); }
    var count = (collection.features || []).length;
    setStatus(count ? msg("map.loaded", { count: count }) : msg("map.no_wards"), count ? "ready" : "empty");
    applyFilters();
    renderFeed();
  }

  getJson(cfg.wardsUrl, "application/geo+json, application/json")
    .then(drawWards)
    .catch(function () { setStatus(msg("map.load_error"), "error"); });

  /* ------------------------------------------------------------------ filters */

  var filters = { ward: "", hours: 0 };

  function passes(ward, time, latlng) {
    if (filters.ward) {
      if (ward) {
        if (ward !== filters.ward) { return false; }
      } else if (!latlng || !inWard(latlng, filters.ward)) {
        return false;
      }
    }
    if (filters.hours && time) {
      var at = Date.parse(time);
      if (!isNaN(at) && at < Date.now() - filters.hours * 3600 * 1000) { return false; }
    }
    return true;
  }

  function applyFilters() {
    Object.keys(layers).forEach(function (id) { showLayer(layers[id]); });
  }

  if (wardSelect) {
    wardSelect.addEventListener("change", function () {
      filters.ward = wardSelect.value;
      var ward = wards[filters.ward];
      if (ward) { map.fitBounds(ward.layer.getBounds(), { padding: [24, 24] }); }
      applyFilters();
      renderFeed();
    });
  }
  if (timeSelect) {
    timeSelect.addEventListener("change", function () {
      filters.hours = parseInt(timeSelect.value || "0", 10) || 0;
      applyFilters();
      renderFeed();
    });
  }

  /* ------------------------------------------------------------------ layers */

  var layers = {};  // id -> { meta, cluster, items, loaded, timer }
  var pendingFirstLoads = 0;
  /* What waits until every layer is on the map: the event stream, the KPI strip and the panels.
   * A browser opens at most six connections to the server; the map comes first. */
  var afterLayers = [];
  function whenLayersLoaded(fn) {
    if (pendingFirstLoads === 0 && mapEl.getAttribute("data-layers") === "ready") { fn(); } else { afterLayers.push(fn); }
  }

  function globToRegExp(glob) {
    var escaped = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    return new RegExp("^" + escaped + "$");
  }

  function popupFor(props, layerTitle) {
    var box = el("div", "map-popup");
    box.appendChild(el("p", "map-popup__layer", layerTitle));
    box.appendChild(el("p", "map-popup__label", props.label || ""));
    var meta = [];
    if (props.ward) { meta.push(wardName(props.ward)); }
    if (props.time) { meta.push(formatTime(props.time)); }
    if (meta.length) { box.appendChild(el("p", "map-popup__meta", meta.join(" · "))); }
    return box;
  }

  function toItems(collection, meta) {
    var items = [];
    ((collection && collection.features) || []).forEach(function (feature) {
      var g = feature.geometry;
      if (!g || g.type !== "Point" || !g.coordinates || g.coordinates.length < 2) { return; }
      var lng = Number(g.coordinates[0]);
      var lat = Number(g.coordinates[1]);
      if (!isFinite(lat) || !isFinite(lng)) { return; }
      var props = feature.properties || {};
      items.push({
        latlng: L.latLng(lat, lng),
        colour: props.colour,
        label: props.label ? String(props.label) : "",
        status: props.status,
        ward: props.ward || null,
        time: props.time || null,
        popup: popupFor(props, meta.title)
      });
    });
    return items;
  }

  function showLayer(state) {
    var visible = state.items.filter(function (item) { return passes(item.ward, item.time, item.latlng); });
    state.cluster.setItems(visible);
    var counter = document.querySelector('[data-layer-count="' + state.meta.id + '"]');
    if (counter) { counter.textContent = state.failed ? msg("dashboard.layer.error") : msg("dashboard.layer.count", { count: visible.length }); }
  }

  function firstLoadDone() {
    pendingFirstLoads -= 1;
    if (pendingFirstLoads === 0) {
      if (window.performance && performance.mark) { performance.mark("ioc:layers-loaded"); }
      mapEl.setAttribute("data-layers", "ready");
      afterLayers.splice(0).forEach(function (fn) { fn(); });
    }
  }

  function loadLayer(state) {
    return getJson(state.meta.url, "application/geo+json, application/json")
      .then(function (collection) { state.items = toItems(collection, state.meta); state.failed = false; })
      .catch(function () { state.failed = true; })
      .then(function () {
        showLayer(state);
        if (!state.loaded) { state.loaded = true; firstLoadDone(); }
      });
  }

  function scheduleReload(state) {
    if (state.timer) { return; }
    state.timer = window.setTimeout(function () { state.timer = null; loadLayer(state); }, RELOAD_DELAY_MS);
  }

  (cfg.layers || []).forEach(function (meta) {
    var cluster = window.IocClusters.layer(map, {
      clusterTitle: function (n) { return meta.title + ": " + msg("dashboard.cluster", { count: n }); }
    });
    var state = { meta: meta, cluster: cluster, items: [], loaded: false, failed: false, timer: null,
      topics: (meta.topics || []).map(globToRegExp) };
    layers[meta.id] = state;
    cluster.group.addTo(map);
    pendingFirstLoads += 1;
    loadLayer(state);
  });
  if (pendingFirstLoads === 0) { pendingFirstLoads = 1; firstLoadDone(); }

  Array.prototype.forEach.call(document.querySelectorAll("[data-layer-id]"), function (box) {
    box.addEventListener("change", function () {
      var state = layers[box.getAttribute("data-layer-id")];
      if (!state) { return; }
      if (box.checked) { state.cluster.group.addTo(map); state.cluster.render(); } else { map.removeLayer(state.cluster.group); }
    });
  });

  /* ------------------------------------------------------------------ live alarm feed */

  var feedEl = document.getElementById("alarm-feed");
  var feedStatus = document.getElementById("feed-status");
  var feedCount = document.getElementById("feed-count");
  var alarms = {};  // id -> alarm (open ones)

  function setFeedStatus(text) { if (feedStatus) { feedStatus.textContent = text; } }

  function upsertAlarm(alarm) {
    if (!alarm || typeof alarm.id !== "number") { return; }
    var known = alarms[alarm.id];
    if (known && known.updated_at && alarm.updated_at && known.updated_at > alarm.updated_at) { return; }
    if (alarm.cleared) { delete alarms[alarm.id]; } else { alarms[alarm.id] = alarm; }
  }

  function act(alarm, action, button) {
    button.disabled = true;
    fetch(cfg.alarmsUrl + "/" + alarm.id + "/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
      body: "{}"
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.detail || ("HTTP " + response.status)); }
        return data;
      });
    }).then(function (updated) {
      upsertAlarm(updated);
      renderFeed();
    }).catch(function (err) {
      button.disabled = false;
      setFeedStatus(msg("dashboard.action_failed", { detail: err.message }));
    });
  }

  function alarmItem(alarm) {
    var li = el("li", "alarm alarm--" + String(alarm.severity).toLowerCase());
    li.setAttribute("data-alarm-id", String(alarm.id));
    li.setAttribute("data-status", alarm.status);
    var head = el("div", "alarm__head");
    head.appendChild(el("span", "severity severity--" + String(alarm.severity).toLowerCase(), msg("dashboard.severity." + alarm.severity)));
    var time = el("time", "alarm__time", formatTime(alarm.updated_at));
    time.setAttribute("datetime", alarm.updated_at);
    head.appendChild(time);
    li.appendChild(head);
    var titleId = "alarm-title-" + alarm.id;
    var title = el("p", "alarm__title", alarm.title);
    title.id = titleId;
    li.appendChild(title);
    var meta = [wardName(alarm.ward_code), msg("dashboard.alarm.status." + alarm.status)];
    if (alarm.count > 1) { meta.push("×" + alarm.count); }
    li.appendChild(el("p", "alarm__meta", meta.join(" · ")));
    if (cfg.canAct) {
      var actions = el("div", "alarm__actions");
      if (!alarm.acknowledged) {
        var ack = el("button", "button button--small button--primary", msg("dashboard.ack"));
        ack.type = "button";
        ack.setAttribute("data-action", "ack");
        ack.setAttribute("aria-describedby", titleId);
        ack.addEventListener("click", function () { act(alarm, "ack", ack); });
        actions.appendChild(ack);
      }
      var clear = el("button", "button button--small button--ghost", msg("dashboard.clear"));
      clear.type = "button";
      clear.setAttribute("data-action", "clear");
      clear.setAttribute("aria-describedby", titleId);
      clear.addEventListener("click", function () { act(alarm, "clear", clear); });
      actions.appendChild(clear);
      li.appendChild(actions);
    }
    return li;
  }

  function renderFeed() {
    if (!feedEl) { return; }
    var focusedId = null;
    var focusedAction = null;
    var active = document.activeElement;
    if (active && feedEl.contains(active) && active.closest) {
      var owner = active.closest("[data-alarm-id]");
      focusedId = owner ? owner.getAttribute("data-alarm-id") : null;
      focusedAction = active.getAttribute("data-action");
    }
    var list = Object.keys(alarms).map(function (id) { return alarms[id]; })
      .filter(function (a) { return passes(a.ward_code, a.updated_at, null); })
      .sort(function (a, b) { return a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : b.id - a.id; });
    feedEl.textContent = "";
    list.forEach(function (alarm) { feedEl.appendChild(alarmItem(alarm)); });
    if (!list.length) { feedEl.appendChild(el("li", "empty-state", msg("dashboard.feed.empty"))); }
    feedEl.setAttribute("data-state", list.length ? "ready" : "empty");
    if (feedCount) {
      feedCount.hidden = !list.length;
      feedCount.textContent = String(list.length);
      feedCount.setAttribute("aria-label", msg("dashboard.feed.count", { count: list.length }));
    }
    if (focusedId) {
      // Keep the keyboard user's place after a redraw.
      var again = feedEl.querySelector('[data-alarm-id="' + focusedId + '"] [data-action="' + focusedAction + '"]') ||
        feedEl.querySelector('[data-alarm-id="' + focusedId + '"] button');
      if (again) { again.focus(); }
    }
  }

  function loadAlarms() {
    if (!cfg.alarmsUrl) { return Promise.resolve(); }
    return getJson(cfg.alarmsUrl + "?status=active&limit=200")
      .then(function (list) {
        alarms = {};
        list.forEach(upsertAlarm);
        renderFeed();
      })
      .catch(function () { setFeedStatus(msg("dashboard.feed.error")); });
  }

  /* ------------------------------------------------------------------ event stream */

  function onEvent(topic, event) {
    if (topic.indexOf("alarm.") === 0 && event && event.payload) {
      upsertAlarm(event.payload);
      renderFeed();
    }
    Object.keys(layers).forEach(function (id) {
      var state = layers[id];
      if (state.topics.some(function (re) { return re.test(topic); })) { scheduleReload(state); }
    });
  }

  function startLive() {
    if (cfg.eventsUrl) {
      var topics = ["alarm.*"];
      (cfg.layers || []).forEach(function (meta) {
        (meta.topics || []).forEach(function (t) { if (topics.indexOf(t) === -1) { topics.push(t); } });
      });
      var firstOpen = true;
      window.IocEvents.open(cfg.eventsUrl + "?topics=" + encodeURIComponent(topics.join(",")), {
        onEvent: onEvent,
        onState: function (s) {
          if (s === "open") {
            setFeedStatus(msg("dashboard.feed.live"));
            feedEl.setAttribute("data-live", "open");
            // After a reconnection the replay brings what was missed; the first time, load the list.
            if (firstOpen) { firstOpen = false; loadAlarms(); }
          } else {
            setFeedStatus(msg("dashboard.feed.offline"));
            feedEl.setAttribute("data-live", "retrying");
          }
        }
      });
    } else {
      loadAlarms();
    }
  }
  whenLayersLoaded(startLive);

  /* ------------------------------------------------------------------ KPI strip */

  var strip = document.getElementById("kpi-strip");
  if (strip && cfg.kpisUrl) {
    whenLayersLoaded(function () { loadKpis(strip); });
  } else if (strip) {
    strip.setAttribute("data-state", "empty");
  }

  function loadKpis(strip) {
    getJson(cfg.kpisUrl).then(function (kpis) {
      var shown = (kpis || []).filter(function (k) { return k.number; });
      if (!shown.length) { shown = kpis || []; }
      if (!shown.length) { strip.setAttribute("data-state", "empty"); return; }
      strip.textContent = "";
      shown.forEach(function (k) {
        var li = el("li", "kpi-tile kpi-tile--" + (k.status || "no_data"));
        var link = el("a", "kpi-tile__link");
        link.href = "/kpi/" + encodeURIComponent(k.id);
        link.appendChild(el("span", "kpi-tile__name", cfg.lang === "en" && k.name_en ? k.name_en : k.name_vi));
        var value = k.value === null || k.value === undefined ? "—"
          : Number(k.value).toLocaleString(locale, { maximumFractionDigits: 1 }) + (k.unit ? " " + k.unit : "");
        link.appendChild(el("span", "kpi-tile__value", value));
        var target = k.target === null || k.target === undefined ? ""
          : msg("dashboard.kpi.target") + " " + (k.comparison || "") + " " + Number(k.target).toLocaleString(locale) + (k.unit ? " " + k.unit : "");
        link.appendChild(el("span", "kpi-tile__target", target));
        link.appendChild(el("span", "kpi-tile__status", msg("kpi.status." + (k.status || "no_data"))));
        li.appendChild(link);
        strip.appendChild(li);
      });
      strip.setAttribute("data-state", "ready");
    }).catch(function () { strip.setAttribute("data-state", "error"); });
  }

  /* ------------------------------------------------------------------ module panels */

  /* Panels that modules registered: each loads its HTML fragment from its own (same-origin) URL. */
  var panels = document.querySelectorAll("[data-panel-url]");
  whenLayersLoaded(function () { Array.prototype.forEach.call(panels, loadPanel); });
  function loadPanel(panel) {
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
  }
})();
