// Docs pages: tab groups as an ARIA tablist (arrow keys, Home, End) and a copy button
// per code block. Without this script every panel shows, one after another.
(function () {
  "use strict";

  function select(tabs, index, focus) {
    tabs.forEach(function (tab, i) {
      var selected = i === index;
      tab.setAttribute("aria-selected", selected ? "true" : "false");
      tab.tabIndex = selected ? 0 : -1;
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
    });
    if (focus) tabs[index].focus();
  }

  function setUpTabs(group) {
    var list = group.querySelector("[role=tablist]");
    if (!list) return;
    var tabs = Array.prototype.slice.call(list.querySelectorAll("[role=tab]"));
    tabs.forEach(function (tab) {
      var panel = document.getElementById(tab.getAttribute("aria-controls"));
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", tab.id);
    });
    list.hidden = false;
    group.classList.add("tabs-ready");
    select(tabs, 0, false);
    list.addEventListener("click", function (event) {
      var tab = event.target.closest("[role=tab]");
      if (tab) select(tabs, tabs.indexOf(tab), true);
    });
    list.addEventListener("keydown", function (event) {
      var current = tabs.indexOf(document.activeElement);
      if (current < 0) return;
      var next = {
        ArrowRight: (current + 1) % tabs.length,
        ArrowLeft: (current - 1 + tabs.length) % tabs.length,
        Home: 0,
        End: tabs.length - 1,
      }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(tabs, next, true);
    });
  }

  async function copy(button) {
    var target = document.getElementById(button.dataset.copyTarget);
    var status = document.getElementById("copy-status");
    try {
      await navigator.clipboard.writeText(target.textContent);
    } catch (error) {
      // No clipboard (an insecure origin): select the text so Ctrl+C copies it.
      var range = document.createRange();
      range.selectNodeContents(target);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      status.textContent = "Press Ctrl+C (⌘C) to copy the selected text.";
      return;
    }
    button.firstChild.textContent = "Copied";
    status.textContent = "Copied to the clipboard.";
    window.setTimeout(function () { button.firstChild.textContent = "Copy"; }, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-tabs]").forEach(setUpTabs);
    document.querySelectorAll(".code-block button[data-copy-target]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { copy(button); });
    });
  });
})();
