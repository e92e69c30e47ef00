/* Vinh Smart — makes the site an installable app: registers the service worker (/sw.js),
 * which keeps an offline shell (home page, styles, fonts, an offline page). */
(function () {
  "use strict";
  if (!("serviceWorker" in navigator) || !window.isSecureContext) { return; }
  window.addEventListener("load", function () {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {
      /* No service worker (private mode, blocked): the site works online as before. */
    });
  });
})();
