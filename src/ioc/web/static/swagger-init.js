/* Vinh IOC — starts Swagger UI on /docs from the JSON in #swagger-config.
 * Kept out of the page so that /docs also works under CSP `script-src 'self'`. */
(function () {
  "use strict";
  var el = document.getElementById("swagger-config");
  var cfg = {};
  try { cfg = JSON.parse((el && el.textContent) || "{}"); } catch (e) { cfg = {}; }
  var options = {
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]
  };
  Object.keys(cfg).forEach(function (key) {
    if (key !== "oauth2RedirectPath") { options[key] = cfg[key]; }
  });
  if (cfg.oauth2RedirectPath) {
    options.oauth2RedirectUrl = window.location.origin + cfg.oauth2RedirectPath;
  }
  window.ui = SwaggerUIBundle(options);
})();
