// Every page: the header's menu button at phone width, and the account menu closing
// on Escape or a click elsewhere. Without this script the menu is simply always open.
(function () {
  "use strict";

  function setUpMenu() {
    var button = document.querySelector(".menu-toggle");
    var menu = document.getElementById("site-menu");
    if (!button || !menu) return;
    var header = button.closest(".site-header");

    function setOpen(open) {
      button.setAttribute("aria-expanded", open ? "true" : "false");
      menu.classList.toggle("open", open);
    }

    header.classList.add("menu-ready");
    button.hidden = false;
    button.addEventListener("click", function () {
      setOpen(button.getAttribute("aria-expanded") !== "true");
    });
    header.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        setOpen(false);
        button.focus();
      }
    });
  }

  function setUpAccountMenu() {
    var details = document.querySelector(".user-menu");
    if (!details) return;
    document.addEventListener("click", function (event) {
      if (details.open && !details.contains(event.target)) details.open = false;
    });
    details.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && details.open) {
        details.open = false;
        details.querySelector("summary").focus();
        event.stopPropagation();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpMenu();
    setUpAccountMenu();
  });
})();
