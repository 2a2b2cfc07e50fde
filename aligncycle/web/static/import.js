// aligncycle: the import form. Refuses files too big to upload before sending them (the
// server refuses them too), and says the upload is under way. The form works without this.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.maxBytes) return;
    var total = 0;
    form.querySelectorAll("input[type=file]").forEach(function (input) {
      for (var i = 0; i < input.files.length; i++) { total += input.files[i].size; }
    });
    var box = form.querySelector("[data-size-error]");
    if (total > Number(form.dataset.maxBytes)) {
      event.preventDefault();
      if (box) { box.textContent = form.dataset.tooBig; box.hidden = false; box.focus(); }
      return;
    }
    if (box) { box.hidden = true; }
    var button = form.querySelector("button[type=submit]");
    if (button) {
      // after the form is sent: a disabled button would not be submitted with it
      setTimeout(function () { button.disabled = true; button.textContent = "Uploading…"; }, 0);
    }
  });
})();
