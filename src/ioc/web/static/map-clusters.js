/* Vinh IOC — grid clustering of point markers on a Leaflet map (our own, no plug-in).
 *
 * IocClusters.layer(map, options) returns a layer group that draws its items — objects
 * { latlng: L.LatLng, colour: "#hex", label: "text", popup: Node|string|null } — as circle
 * markers in their colour. At each zoom the screen is cut into square cells (options.cell
 * pixels, 56 by default); a cell holding several items becomes one round cluster marker with
 * their count, coloured like most of them, that zooms in on them when selected (mouse or
 * keyboard). setItems(items) replaces the items; the layer redraws after every zoom.
 */
(function (global) {
  "use strict";
  if (typeof L === "undefined") { return; }

  var HEX = /^#[0-9a-fA-F]{3,8}$/;
  var DEFAULT_COLOUR = "#4a5565";

  function safeColour(colour) { return HEX.test(colour || "") ? colour : DEFAULT_COLOUR; }

  /* The colour most items of a cluster share (ties: the first seen). */
  function majorityColour(items) {
    var counts = {};
    var best = null;
    items.forEach(function (item) {
      var c = safeColour(item.colour);
      counts[c] = (counts[c] || 0) + 1;
      if (best === null || counts[c] > counts[best]) { best = c; }
    });
    return best || DEFAULT_COLOUR;
  }

  /* Dark text on light fills, white on dark ones (WCAG contrast of the count). */
  function textColourOn(hex) {
    var h = hex.replace("#", "");
    if (h.length === 3) { h = h.charAt(0) + h.charAt(0) + h.charAt(1) + h.charAt(1) + h.charAt(2) + h.charAt(2); }
    var rgb = [0, 2, 4].map(function (i) {
      var v = parseInt(h.substr(i, 2), 16) / 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    var lum = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
    return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#000000" : "#ffffff";
  }

  function ClusterLayer(map, options) {
    this.map = map;
    this.options = options || {};
    this.cell = this.options.cell || 56;
    this.group = L.layerGroup();
    this.items = [];
    this.clusterTitle = this.options.clusterTitle || function (n) { return String(n); };
    var self = this;
    map.on("zoomend", function () { if (map.hasLayer(self.group)) { self.render(); } });
  }

  ClusterLayer.prototype.setItems = function (items) {
    this.items = items || [];
    this.render();
  };

  ClusterLayer.prototype.render = function () {
    var map = this.map;
    var zoom = map.getZoom();
    var cell = this.cell;
    var cells = {};
    var order = [];
    this.group.clearLayers();
    this.items.forEach(function (item) {
      var p = map.project(item.latlng, zoom);
      var key = Math.floor(p.x / cell) + ":" + Math.floor(p.y / cell);
      if (!cells[key]) { cells[key] = []; order.push(key); }
      cells[key].push(item);
    });
    for (var i = 0; i < order.length; i += 1) {
      var members = cells[order[i]];
      this.group.addLayer(members.length === 1 ? this.marker(members[0]) : this.cluster(members));
    }
  };

  ClusterLayer.prototype.marker = function (item) {
    var marker = L.circleMarker(item.latlng, {
      radius: this.options.radius || 8,
      color: "#1b2330",
      weight: 1.5,
      fillColor: safeColour(item.colour),
      fillOpacity: 0.92
    });
    if (item.label) { marker.bindTooltip(String(item.label), { direction: "top", offset: [0, -6] }); }
    if (item.popup) { marker.bindPopup(item.popup); }
    return marker;
  };

  ClusterLayer.prototype.cluster = function (members) {
    var map = this.map;
    var lat = 0;
    var lng = 0;
    var latlngs = members.map(function (m) { lat += m.latlng.lat; lng += m.latlng.lng; return m.latlng; });
    var centre = L.latLng(lat / members.length, lng / members.length);
    var colour = majorityColour(members);
    var size = members.length < 10 ? 34 : members.length < 100 ? 40 : 48;
    var badge = document.createElement("span");
    badge.className = "map-cluster__count";
    badge.textContent = String(members.length);
    badge.style.backgroundColor = colour;
    badge.style.color = textColourOn(colour);
    var marker = L.marker(centre, {
      icon: L.divIcon({ className: "map-cluster", html: badge, iconSize: [size, size] }),
      title: this.clusterTitle(members.length),
      alt: this.clusterTitle(members.length),
      keyboard: true,
      riseOnHover: true
    });
    marker.on("click", function () {
      var bounds = L.latLngBounds(latlngs);
      var next = map.getBoundsZoom(bounds, false, L.point(48, 48));
      if (next <= map.getZoom()) { next = Math.min(map.getZoom() + 2, map.getMaxZoom() || 19); }
      map.setView(bounds.getCenter(), next);
    });
    return marker;
  };

  global.IocClusters = {
    layer: function (map, options) { return new ClusterLayer(map, options); },
    textColourOn: textColourOn
  };
})(window);
