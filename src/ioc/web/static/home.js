/* Vinh Smart — the home page's live figures, from public APIs only:
 * - air quality now and flood warnings: the public map layers of kind "air" and "flood"
 *   (GeoJSON points whose properties carry label, colour, status; see docs/MODULES.md);
 * - the public KPIs: the KPI module's list (anonymous callers see the public ones).
 * Without JavaScript or data the cards keep their links and their "no data" notes. */
(function () {
  "use strict";
  var el = document.getElementById("ioc-config");
  if (!el) { return; }
  var cfg;
  try { cfg = JSON.parse(el.textContent || "{}"); } catch (e) { return; }
  var messages = cfg.i18n || {};
  function msg(key) { return Object.prototype.hasOwnProperty.call(messages, key) ? messages[key] : key; }
  /* Statuses of a flood gauge that are not a warning. */
  var QUIET = { normal: true, ok: true, none: true, clear: true, "0": true };
  var MAX_ITEMS = 6;

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/geo+json, application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); });
  }

  function swatch(colour) {
    var span = document.createElement("span");
    span.className = "swatch";
    span.setAttribute("aria-hidden", "true");
    if (/^#[0-9a-fA-F]{3,8}$/.test(colour || "")) { span.style.backgroundColor = colour; }
    return span;
  }

  function show(kind, items, emptyText) {
    var box = document.querySelector('[data-live="' + kind + '"]');
    if (!box) { return; }
    var list = box.querySelector("ul");
    list.textContent = "";
    items.slice(0, MAX_ITEMS).forEach(function (item) {
      var li = document.createElement("li");
      if (item.colour) { li.appendChild(swatch(item.colour)); }
      var text = document.createElement("span");
      text.textContent = item.text;
      li.appendChild(text);
      if (item.badge) {
        var badge = document.createElement("span");
        badge.className = "badge " + (item.badgeClass || "");
        badge.textContent = item.badge;
        li.appendChild(badge);
      }
      list.appendChild(li);
    });
    if (!items.length && emptyText) {
      var p = document.createElement("li");
      p.className = "live-list__none";
      p.textContent = emptyText;
      list.appendChild(p);
    }
    box.hidden = false;
    var card = box.parentNode;
    var empty = card && card.querySelector('[data-state="empty"]');
    if (empty) { empty.hidden = true; }
  }

  function features(collection) {
    return (collection && collection.features) || [];
  }

  (cfg.layers || []).forEach(function (layer) {
    getJson(layer.url).then(function (collection) {
      var items = features(collection).map(function (f) {
        var p = f.properties || {};
        return { text: String(p.label || ""), colour: p.colour, status: String(p.status || "") };
      }).filter(function (item) { return item.text; });
      if (layer.kind === "flood") {
        var warnings = items.filter(function (item) { return !QUIET[item.status.toLowerCase()]; });
        if (items.length) { show("flood", warnings, msg("home.flood.none")); }
      } else if (items.length) {
        show("air", items, "");
      }
    }).catch(function () { /* the card keeps its link */ });
  });

  if (cfg.kpisUrl) {
    getJson(cfg.kpisUrl).then(function (kpis) {
      var items = (kpis || []).filter(function (k) { return k.public && k.value !== null && k.value !== undefined; })
        .map(function (k) {
          var name = cfg.lang === "en" && k.name_en ? k.name_en : k.name_vi;
          var value = Number(k.value).toLocaleString(cfg.lang === "en" ? "en-GB" : "vi-VN", { maximumFractionDigits: 1 });
          return {
            text: name + ": " + value + (k.unit ? " " + k.unit : ""),
            badge: msg("kpi.status." + k.status),
            badgeClass: "badge--" + k.status
          };
        });
      if (items.length) { show("kpi", items, ""); }
    }).catch(function () { /* the card keeps its link */ });
  }
})();
