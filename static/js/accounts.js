// Copy buttons (data-copy-target="<element id>") and focus on the first form error.
(function () {
  "use strict";

  function textOf(element) {
    return "value" in element && element.tagName !== "PRE" ? element.value : element.textContent;
  }

  async function copy(button) {
    var target = document.getElementById(button.dataset.copyTarget);
    var status = document.querySelector(".copy-status");
    if (!target) return;
    var text = textOf(target);
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {
      // Clipboard API unavailable (insecure origin): select the text so Ctrl+C works.
      var range = document.createRange();
      range.selectNodeContents(target);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      if (target.select) target.select();
      if (status) status.textContent = "Press Ctrl+C (⌘C) to copy the selected text.";
      return;
    }
    var label = button.firstChild;
    label.textContent = "Copied";
    if (status) status.textContent = "Copied to the clipboard.";
    window.setTimeout(function () { label.textContent = "Copy"; }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy-target]");
    // Code blocks shared with the docs (key created page) are docs.js's to copy.
    if (button && !button.closest(".code-block")) copy(button);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-has-errors]");
    if (!form) return;
    var invalid = form.querySelector("[aria-invalid=true]");
    var summary = form.querySelector(".error-summary");
    (invalid || summary).focus();
  });
})();
