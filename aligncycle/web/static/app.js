// aligncycle: small enhancements. Every page works without this file.
(function () {
  "use strict";

  // Forms marked data-inline="ID" are sent in the background; the element with that id (and
  // the message area) is replaced by the one from the page the server answers with. Errors
  // come back the same way, next to the field, with what was typed kept.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.inline || !window.fetch) return;
    var target = document.getElementById(form.dataset.inline);
    if (!target) return;
    event.preventDefault();
    var button = form.querySelector("button[type=submit], button:not([type])");
    if (button) { button.disabled = true; }
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" }
    }).then(function (response) {
      return response.text().then(function (html) { return { ok: response.ok, html: html }; });
    }).then(function (result) {
      var doc = new DOMParser().parseFromString(result.html, "text/html");
      var fresh = doc.getElementById(form.dataset.inline);
      var flash = doc.getElementById("messages");
      var here = document.getElementById("messages");
      if (flash && here) { here.replaceWith(flash); }
      if (fresh) {
        target.replaceWith(fresh);
        var focus = fresh.querySelector(".invalid, .alert, .flash-row");
        if (focus && focus.focus) { focus.focus(); }
      } else if (result.ok) {
        target.remove();  // e.g. an item that is no longer open
      } else {
        form.submit();
      }
    }).catch(function () {
      form.submit();
    });
  });

  // Filters apply as soon as a choice is made.
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el && el.form && el.form.hasAttribute("data-autosubmit")) { el.form.submit(); }
  });

  // Ask before doing something that cannot be undone.
  document.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target.closest("[data-confirm]") : null;
    if (el && !window.confirm(el.getAttribute("data-confirm"))) { event.preventDefault(); }
  });

  // Print button on the report.
  document.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target.closest("[data-print]") : null;
    if (el) { event.preventDefault(); window.print(); }
  });
})();

// htmx (vendored, loaded by the pages that save in place): a refused save (4xx) comes back as
// the page again with the message next to the form and what was typed kept; swap it in like a
// success, then put the focus on the message.
(function () {
  "use strict";
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    var where = elt && elt.getAttribute ? elt.getAttribute("hx-target") : null;
    var region = where ? document.querySelector(where) : null;
    var focus = region && region.querySelector(".alert, .invalid");
    if (focus && focus.focus) { focus.focus(); }
  });
})();
