// Server-sent events from /api/live: one EventSource per page, reconnecting by itself.
export function live(runId, onEvent) {
  const dot = document.getElementById("live-dot");
  const url = runId ? `/api/live?run=${encodeURIComponent(runId)}` : "/api/live";
  const source = new EventSource(url);
  source.addEventListener("hello", (m) => {
    dot?.classList.add("on");
    if (dot) dot.title = `Live (${JSON.parse(m.data).mode})`;
  });
  source.addEventListener("ai.event", (m) => onEvent(JSON.parse(m.data)));
  source.onerror = () => dot?.classList.remove("on");
  window.addEventListener("pagehide", () => source.close());
  return source;
}

// Re-read a page's JSON twin at most every `ms` while events keep coming.
export function throttled(fn, ms = 400) {
  let timer = null;
  let again = false;
  return () => {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(() => { timer = null; if (again) { again = false; fn(); } }, ms);
  };
}
