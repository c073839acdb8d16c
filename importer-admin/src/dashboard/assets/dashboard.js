// mailchimp-importer dashboard: live sections. Every element with data-refresh is replaced,
// every data-interval milliseconds, by the HTML fragment the server renders at that address.
// A fragment that sets data-final on its root stops the polling (a finished run).
"use strict";
(function () {
  function poll(el) {
    var url = el.getAttribute("data-refresh");
    var every = parseInt(el.getAttribute("data-interval") || "2000", 10);
    var timer = setInterval(function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          el.innerHTML = html;
          el.setAttribute("data-updated", String(Date.now()));
          if (el.querySelector("[data-final]")) { clearInterval(timer); }
        })
        .catch(function () { el.setAttribute("data-stale", "true"); });
    }, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(poll);
  });
})();
