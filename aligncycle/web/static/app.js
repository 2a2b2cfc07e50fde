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
// success, then put the focus on the message. A refusal with a page of its own (not allowed,
// not found, signed out, the store unavailable) leaves this page and what was typed as they
// are and shows that page's message here.
(function () {
  "use strict";

  function say(text) {
    var box = document.getElementById("messages");
    if (!box || !text) { return; }
    box.innerHTML = "";
    var alert = document.createElement("div");
    alert.className = "alert";
    alert.setAttribute("role", "alert");
    alert.textContent = text;
    box.appendChild(alert);
  }

  function messageOf(html) {
    var doc = new DOMParser().parseFromString(html || "", "text/html");
    var found = doc.querySelector("main .alert") || doc.querySelector("main .card > p") ||
      doc.querySelector("main h1");
    return found ? found.textContent.trim() : "";
  }

  function targetId(event) {
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;
    var where = elt && elt.getAttribute ? elt.getAttribute("hx-target") : "";
    return where && where.charAt(0) === "#" ? where.slice(1) : "";
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    var html = event.detail.serverResponse || "";
    if ((xhr.responseURL || "").indexOf("/login") !== -1) {
      event.detail.shouldSwap = false;
      say("You were signed out, so this was not saved. Sign in again in another tab, then " +
        "save again: what you typed is still here.");
      return;
    }
    if (xhr.status >= 400 && xhr.status < 500) {
      var id = targetId(event);
      if (id && html.indexOf('id="' + id + '"') === -1) {
        event.detail.shouldSwap = false;
        say(messageOf(html));
        return;
      }
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    if (event.detail.xhr.status >= 500) {
      say(messageOf(event.detail.xhr.responseText) ||
        "This could not be saved just now; what you typed is still here. Try again shortly.");
    }
  });

  document.addEventListener("htmx:sendError", function () {
    say("The server could not be reached, so this was not saved; what you typed is still here.");
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var id = targetId(event);
    var region = id ? document.getElementById(id) : null;
    var focus = region && region.querySelector(".alert, .invalid");
    if (focus && focus.focus) { focus.focus(); }
  });
})();
