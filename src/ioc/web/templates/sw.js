/* Vinh Smart — service worker (served at /sw.js, scope "/").
 *
 * Offline shell: at install it stores the home page (as an anonymous visitor sees it), the
 * offline page, our CSS and scripts, the Vietnamese and Latin fonts and the icons.
 * - Pages (HTML): network first; offline, the stored home page for "/", else the offline page.
 *   Pages fetched while signed in are never stored (they may show a name or a form token).
 * - Versioned static files (/static/...?v=hash) and vendored files (/static/vendor/...): cache
 *   first, stored on first use; a changed file has a new URL, so nothing stale is served.
 * - Everything else (APIs, the event stream, uploads): straight to the network.
 * A new version (a changed asset changes this file) replaces the old caches when it activates.
 */
"use strict";

var SHELL_CACHE = "ioc-shell-{{ version }}";
var PRECACHE = {{ precache | tojson }};
var PAGES = {{ pages | tojson }};
var OFFLINE_PAGE = "/offline";

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(SHELL_CACHE).then(function (cache) {
      var pages = PAGES.map(function (url) {
        // Anonymous copies: no cookie, so no name or token ends up in the cache.
        return fetch(url, { credentials: "omit", cache: "no-store" }).then(function (response) {
          if (!response.ok) { throw new Error(url + ": HTTP " + response.status); }
          return cache.put(url, response);
        });
      });
      return Promise.all([cache.addAll(PRECACHE)].concat(pages));
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (name) {
        return name.indexOf("ioc-shell-") === 0 && name !== SHELL_CACHE;
      }).map(function (name) { return caches.delete(name); }));
    }).then(function () { return self.clients.claim(); })
  );
});

function isPage(request) {
  return request.mode === "navigate";
}

function isVersionedStatic(url) {
  return url.pathname.indexOf("/static/") === 0 &&
    (url.searchParams.has("v") || url.pathname.indexOf("/static/vendor/") === 0);
}

function offlineAnswer(url) {
  return caches.open(SHELL_CACHE).then(function (cache) {
    var stored = url.pathname === "/" ? cache.match("/") : Promise.resolve(undefined);
    return stored.then(function (page) { return page || cache.match(OFFLINE_PAGE); });
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") { return; }
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) { return; }
  if (isPage(request)) {
    event.respondWith(fetch(request).catch(function () { return offlineAnswer(url); }));
    return;
  }
  if (isVersionedStatic(url)) {
    event.respondWith(
      caches.open(SHELL_CACHE).then(function (cache) {
        return cache.match(request).then(function (hit) {
          if (hit) { return hit; }
          return fetch(request).then(function (response) {
            if (response.ok) { cache.put(request, response.clone()); }
            return response;
          });
        });
      })
    );
  }
});
