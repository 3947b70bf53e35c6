// nasloop dashboard: live pages. A page whose <main id="live"> has `data-live` re-reads itself every
// few seconds and swaps in the new #live section when it changed. The HTML comes from the same
// server-rendered, escaped templates; no text is ever inserted as markup by this script.
"use strict";

(function () {
  const indicator = document.getElementById("updated");
  const interval = Number(indicator && indicator.dataset.pollMs) || 3000;

  function note(text) {
    if (indicator) indicator.textContent = text;
  }

  async function refresh() {
    const current = document.getElementById("live");
    if (!current || !current.hasAttribute("data-live") || document.hidden) return;
    try {
      const response = await fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } });
      if (!response.ok) {
        note("update failed: HTTP " + response.status);
        return;
      }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("live");
      if (fresh && fresh.innerHTML !== current.innerHTML) {
        current.replaceWith(document.adoptNode(fresh));
        document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      }
      note("checked " + new Date().toLocaleTimeString());
    } catch (error) {
      note("cannot reach the dashboard: " + error);
    }
  }

  const live = document.getElementById("live");
  if (live && live.hasAttribute("data-live")) {
    note("live: checks every " + interval / 1000 + " s");
    window.setInterval(refresh, interval);
  }
})();
