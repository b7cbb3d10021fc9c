// Starts the vendored Swagger UI on /docs (an external script: the page's CSP allows
// no inline code).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("swagger-ui");
    if (!root || typeof SwaggerUIBundle === "undefined") { return; }
    window.ui = SwaggerUIBundle({
      url: root.getAttribute("data-spec"),
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      onComplete: function () { root.setAttribute("data-rendered", "1"); }
    });
  });
})();
