// The chat page: the sidebar toggle, the composer (Enter sends on a keyboard, the Send
// button on a touch screen, a character counter, edit-and-resend), copy buttons, Send/Stop
// following the server's "generating" status, and following the stream unless the reader
// scrolled up.
(function () {
  "use strict";

  var touch = window.matchMedia("(pointer: coarse)").matches;

  function setUpSidebar() {
    var toggle = document.querySelector("[data-sidebar-toggle]");
    if (!toggle) return;
    var panel = document.getElementById(toggle.getAttribute("aria-controls"));
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      panel.classList.toggle("open", open);
      if (open) panel.querySelector("input[type=search]").focus();
    });
  }

  function flash(button, text) {
    var label = button.textContent;
    button.textContent = text;
    setTimeout(function () { button.textContent = label; }, 1500);
  }

  function copy(button, text) {
    navigator.clipboard.writeText(text).then(
      function () { flash(button, "Copied"); },
      function () { flash(button, "Copy failed"); }
    );
  }

  function setUpCopy() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest("[data-copy], [data-copy-code]");
      if (!button) return;
      if (button.hasAttribute("data-copy")) {
        copy(button, button.getAttribute("data-copy"));
      } else {
        copy(button, button.closest(".code-block").querySelector("pre").textContent);
      }
    });
  }

  function setUpChat() {
    var chat = document.querySelector("[data-chat]");
    if (!chat) return;
    var form = chat.querySelector("#composer");
    var textarea = form.querySelector("textarea");
    var send = chat.querySelector("#chat-send");
    var stop = chat.querySelector("#chat-stop");
    var log = chat.querySelector("#messages");
    var action = form.querySelector("[data-composer-action]");
    var label = form.querySelector("[data-composer-label]");
    var cancelEdit = form.querySelector("[data-cancel-edit]");
    var count = form.querySelector("[data-composer-count]");
    var maxChars = parseInt(form.getAttribute("data-max-chars"), 10);
    var stick = true;

    if (touch) {
      form.querySelector("[data-composer-help]").textContent =
        "The Send button sends · Enter adds a new line";
    }

    function status() { return chat.querySelector("#chat-status"); }
    function generating() { return !!status().querySelector("[data-generating]"); }
    function tooLong() { return textarea.value.length > maxChars; }
    function nearBottom() {
      return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
    }
    function toBottom() { window.scrollTo(0, document.documentElement.scrollHeight); }
    function sync() {
      var busy = generating();
      log.setAttribute("aria-busy", busy ? "true" : "false");
      send.hidden = busy;
      stop.hidden = !busy;
      if (!busy && document.activeElement === document.body) textarea.focus();
    }
    function counted() {
      var length = textarea.value.length;
      var over = length - maxChars;
      textarea.setAttribute("aria-invalid", over > 0 ? "true" : "false");
      count.classList.toggle("over", over > 0);
      if (over > 0) {
        count.textContent = length.toLocaleString() + " / " + maxChars.toLocaleString() +
          " characters: " + over.toLocaleString() + " too many to send";
      } else if (length > maxChars * 0.8) {
        count.textContent = length.toLocaleString() + " / " + maxChars.toLocaleString() + " characters";
      } else {
        count.textContent = "";
      }
    }
    function editing(on) {
      action.value = on ? "edit" : "";
      label.textContent = on ? "Edit your last message" : "Message";
      cancelEdit.hidden = !on;
    }

    textarea.addEventListener("input", counted);
    textarea.addEventListener("keydown", function (event) {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing || touch) return;
      event.preventDefault();
      if (!generating()) form.requestSubmit();
    });
    form.addEventListener("htmx:wsConfigSend", function (event) {
      if (event.target !== form) return;
      if (generating() || tooLong()) {
        event.preventDefault();
        counted();
      }
    });
    form.addEventListener("htmx:wsAfterSend", function (event) {
      if (event.target !== form) return;
      form.reset();
      editing(false);
      counted();
      textarea.focus();
      stick = true;
    });
    log.addEventListener("click", function (event) {
      var edit = event.target.closest("[data-edit]");
      if (!edit) return;
      textarea.value = edit.getAttribute("data-edit");
      editing(true);
      counted();
      textarea.focus();
    });
    cancelEdit.addEventListener("click", function () {
      form.reset();
      editing(false);
      counted();
      textarea.focus();
    });
    stop.addEventListener("click", function () { textarea.focus(); });
    chat.addEventListener("htmx:wsAfterMessage", function () {
      sync();
      if (stick) toBottom();
    });
    chat.addEventListener("htmx:wsClose", function (event) {
      var code = event.detail.event.code;
      if (code === 4403 || code === 4404) {
        status().textContent = "This conversation is not available. Reload the page to sign in again.";
      } else if (code !== 1000) {
        status().textContent = "Connection lost; reconnecting…";
      }
    });
    chat.addEventListener("htmx:wsOpen", function () {
      if (!generating()) status().textContent = "";
    });
    // Scrolling up while an answer streams stops the page from following it; scrolling
    // back to the bottom follows it again (growing content fires no scroll event).
    window.addEventListener("scroll", function () { stick = nearBottom(); }, { passive: true });
    toBottom();
  }

  // A chat form refused with 400 answers with itself and its errors: show them (htmx
  // swaps only 2xx answers unless told).
  function setUpFormErrors() {
    // htmx copies an old element's style attribute onto its replacement while settling;
    // the CSP refuses style attributes, so settling them only logs violations (a stray
    // style="" left by a browser tool or extension is enough).
    htmx.config.attributesToSettle = ["class", "width", "height"];
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      if (event.detail.xhr.status === 400 && event.detail.target.closest("[data-chat-forms]")) {
        event.detail.shouldSwap = true;
        event.detail.isError = false;
      }
    });
  }

  function setUp() {
    setUpFormErrors();
    setUpSidebar();
    setUpCopy();
    setUpChat();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
