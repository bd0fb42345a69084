// reconciler's dashboard: the page is whole without this script; with it,
// the board is fetched again every 5 s and replaced in place, and each
// reload window shows a countdown. No library, no build step.
"use strict";

function countdowns() {
  for (const span of document.querySelectorAll(".window[data-at]")) {
    const seconds = Math.round((Date.parse(span.dataset.at) - Date.now()) / 1000);
    if (Number.isNaN(seconds)) continue;
    span.textContent = seconds > 0
      ? `in ${Math.floor(seconds / 3600)}h ${Math.floor(seconds / 60) % 60}m ${seconds % 60}s`
      : "window open";
  }
}

async function refresh() {
  try {
    // The same address: the events feed keeps its filter.
    const answer = await fetch(location.pathname + location.search, { cache: "no-store" });
    if (!answer.ok) return;
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const board = page.getElementById("board");
    if (board) {
      document.getElementById("board").replaceWith(board);
      document.body.dataset.refreshed = board.dataset.updated || "";
      countdowns();
    }
  } catch (e) {
    // The daemon is restarting or the network is down: try again later.
  }
}

countdowns();
document.body.dataset.live = "1";
setInterval(countdowns, 1000);
setInterval(refresh, 5000);
