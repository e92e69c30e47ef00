/* Vinh Smart — report a problem: pick the place on the map or by GPS, show the expected
   response time of the category, and offer open reports nearby (possible duplicates). */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("reports-config").textContent || "{}");
  var latInput = document.getElementById("lat");
  var lonInput = document.getElementById("lon");
  var category = document.getElementById("category");
  var expected = document.getElementById("expected");
  var dupBox = document.getElementById("duplicates");
  var dupList = document.getElementById("duplicate-list");
  var photos = document.getElementById("photos");
  var marker = null;
  var map = null;

  function showExpected() {
    var opt = category.options[category.selectedIndex];
    expected.textContent = opt ? opt.getAttribute("data-expected") || "" : "";
  }

  function lookNearby() {
    if (!latInput.value || !lonInput.value) { return; }
    var url = cfg.nearbyUrl + "?category=" + encodeURIComponent(category.value) +
      "&lat=" + encodeURIComponent(latInput.value) + "&lon=" + encodeURIComponent(lonInput.value);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (items) {
        dupList.textContent = "";
        items.forEach(function (d) {
          var li = document.createElement("li");
          li.textContent = "#" + d.id + " — " + d.status_label + " — " + d.description.slice(0, 120) +
            " (" + Math.round(d.distance_m) + " m)";
          dupList.appendChild(li);
        });
        dupBox.hidden = items.length === 0;
      })
      .catch(function () { dupBox.hidden = true; });
  }

  function place(lat, lon) {
    latInput.value = lat.toFixed(6);
    lonInput.value = lon.toFixed(6);
    if (map) {
      if (marker) { marker.setLatLng([lat, lon]); } else { marker = L.marker([lat, lon]).addTo(map); }
      map.panTo([lat, lon]);
    }
    lookNearby();
  }

  if (window.L && document.getElementById("pick-map")) {
    var m = cfg.map || {};
    map = L.map("pick-map").setView([m.centerLat || 18.6796, m.centerLon || 105.6813], m.zoom || 13);
    if (m.tileUrl) { L.tileLayer(m.tileUrl, { attribution: m.tileAttribution || "" }).addTo(map); }
    if (m.wardsUrl) {
      fetch(m.wardsUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (gj) { L.geoJSON(gj, { style: { weight: 1, fillOpacity: 0.05 } }).addTo(map); })
        .catch(function () { /* the map still works without the ward outlines */ });
    }
    map.on("click", function (e) { place(e.latlng.lat, e.latlng.lng); });
    if (latInput.value && lonInput.value) { place(parseFloat(latInput.value), parseFloat(lonInput.value)); }
  }

  document.getElementById("gps").addEventListener("click", function () {
    if (!navigator.geolocation) { return; }
    navigator.geolocation.getCurrentPosition(function (pos) {
      place(pos.coords.latitude, pos.coords.longitude);
    }, function () { /* refused or unavailable: the map pick remains */ }, { enableHighAccuracy: true, timeout: 15000 });
  });

  category.addEventListener("change", function () { showExpected(); lookNearby(); });
  photos.addEventListener("change", function () {
    if (photos.files && photos.files.length > (cfg.maxPhotos || 5)) {
      photos.setCustomValidity("Tối đa " + (cfg.maxPhotos || 5) + " ảnh / at most " + (cfg.maxPhotos || 5) + " photos");
    } else { photos.setCustomValidity(""); }
  });
  showExpected();
})();
