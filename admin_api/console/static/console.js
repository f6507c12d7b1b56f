// Chamicore console: the small layer pages need beyond forms that post.
//  - live parts: an element with data-live-topics="power discovery" and data-live-src="/ui/..." is
//    re-fetched (with X-Console-Fragment) when the server says one of those topics changed (SSE /ui/live);
//  - forms with data-confirm ask first; a checkbox with data-select-all toggles the form's name=ids boxes;
//  - selects with data-autosubmit submit their form on change.
"use strict";
(function () {
  const body = document.body;
  const csrf = body.dataset.csrf || "";

  async function refresh(el) {
    const src = el.dataset.liveSrc;
    if (!src || el.dataset.liveBusy) { el.dataset.livePending = "1"; return; }
    el.dataset.liveBusy = "1";
    try {
      const answer = await fetch(src, {headers: {"X-Console-Fragment": "1"}, credentials: "same-origin"});
      if (answer.status === 401) { window.location.reload(); return; }
      if (answer.ok) {
        el.innerHTML = await answer.text();
        el.dataset.liveUpdated = String(Date.now());
        el.dispatchEvent(new CustomEvent("live:updated", {bubbles: true}));
      }
    } finally {
      delete el.dataset.liveBusy;
      if (el.dataset.livePending) { delete el.dataset.livePending; refresh(el); }
    }
  }

  function live() {
    const url = body.dataset.live;
    if (!url || !window.EventSource) return;
    const state = document.getElementById("live-state");
    const source = new EventSource(url);
    source.onopen = () => { if (state) { state.className = "live-state on"; state.textContent = "live"; } };
    source.onerror = () => { if (state) { state.className = "live-state off"; state.textContent = "reconnecting"; } };
    source.addEventListener("change", (event) => {
      document.querySelectorAll("[data-live-topics]").forEach((el) => {
        if (el.dataset.liveTopics.split(/\s+/).includes(event.data)) refresh(el);
      });
    });
    source.addEventListener("ended", () => { source.close(); window.location.reload(); });
  }

  // fetch() with the session's CSRF token, for the few changes made without a form post.
  window.chamicore = {
    csrf: csrf,
    post: (url, data) => fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"},
      body: new URLSearchParams(data || {})}),
    refresh: refresh,
  };

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });
  document.addEventListener("change", (event) => {
    const el = event.target;
    if (el.matches("[data-select-all]")) {
      el.form.querySelectorAll("input[type=checkbox][name=ids]").forEach((box) => { box.checked = el.checked; });
    }
    if (el.matches("[data-autosubmit]")) el.form.requestSubmit();
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", live); else live();
})();
