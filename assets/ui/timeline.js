// mvt-lens: one clip time shared by every panel. Loaded once per gr.HTML panel (js_on_load); the state lives on
// window.mvtLens so that the timeline and every panel see the same time. A panel shows, of the frames its
// model saw (data-times, clip seconds), the one nearest to the shared time; the slider and play/pause move it.
// Nothing here talks to the server: a slider step only moves a background image (see lens/timeline.py).
(() => {
  const bus = (window.mvtLens = window.mvtLens || { t: 0, playing: false, views: new Set(), timelines: new Set() });
  if (!bus.setTime) {
    bus.nearest = (times, t) => {
      let best = 0;
      for (let i = 1; i < times.length; i++) if (Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
      return best;
    };
    bus.paint = (view) => {
      const times = (view.dataset.times || "").split(",").filter((s) => s !== "").map(Number);
      if (!times.length) return;
      const k = bus.nearest(times, bus.t);
      const cols = +view.dataset.cols || 1, rows = +view.dataset.rows || 1;
      const col = k % cols, row = Math.floor(k / cols);
      const frame = view.querySelector(".mvt-frame");
      if (frame) frame.style.backgroundPosition =
        `${cols > 1 ? (100 * col) / (cols - 1) : 0}% ${rows > 1 ? (100 * row) / (rows - 1) : 0}%`;
      view.dataset.frame = String(k);
      view.dataset.frameTime = times[k].toFixed(4);
      view.dataset.clipTime = bus.t.toFixed(4);
      const text = view.querySelector(".mvt-when-text");
      if (text) text.textContent = bus.when(view, times, k);
      view.classList.toggle("mvt-gap", !!view.dataset.spans && !bus.inside(view.dataset.spans, bus.t));
    };
    // windows (data-spans "a,b;c,d", data-window-of: each frame's window): say which window is shown, and
    // when the shared time falls between windows, that this model did not see it
    bus.inside = (spans, t) => spans.split(";").some((s) => { const [a, b] = s.split(",").map(Number); return t >= a && t <= b; });
    bus.when = (view, times, k) => {
      const seen = `seen at ${times[k].toFixed(2)} s`;
      if (!view.dataset.spans) return `frame ${k + 1} of ${times.length} · ${seen}`;
      const of = view.dataset.windowOf.split(",").map(Number), w = of[k], n = Math.max(...of) + 1;
      const f = of.slice(0, k).filter((x) => x === w).length + 1, per = of.filter((x) => x === w).length;
      const where = `window ${w + 1} of ${n} · frame ${f} of ${per}`;
      return bus.inside(view.dataset.spans, bus.t) ? `${where} · ${seen}` : `not seen by this model: nearest ${where}, ${seen}`;
    };
    bus.markWindows = () => {
      for (const bar of document.querySelectorAll(".mvt-win"))
        bar.classList.toggle("mvt-here", bus.t >= +bar.dataset.start && bus.t <= +bar.dataset.end);
    };
    bus.setTime = (t) => {
      bus.t = t;
      for (const tl of bus.timelines) bus.moveTimeline(tl);
      for (const v of bus.views) if (v.isConnected) bus.paint(v); else bus.views.delete(v);
      bus.markWindows();
      document.dispatchEvent(new CustomEvent("mvt:time", { detail: t }));
    };
    bus.moveTimeline = (tl) => {
      if (!tl.isConnected) return bus.timelines.delete(tl);
      const lo = +tl.dataset.start, hi = +tl.dataset.end;
      const slider = tl.querySelector(".mvt-slider");
      if (slider && Math.abs(+slider.value - bus.t) > 1e-6) slider.value = String(bus.t);
      const out = tl.querySelector(".mvt-time");
      if (out) out.textContent = `${bus.t.toFixed(2)} s`;
      const cur = tl.querySelector(".mvt-cursor");
      if (cur && hi > lo) { const x = (1000 * (bus.t - lo)) / (hi - lo); cur.setAttribute("x1", x); cur.setAttribute("x2", x); }
    };
    bus.play = (tl) => {
      bus.playing = !bus.playing;
      for (const b of document.querySelectorAll(".mvt-play")) {
        b.textContent = bus.playing ? "❚❚" : "▶";
        b.setAttribute("aria-label", bus.playing ? "Pause" : "Play");
      }
      if (!bus.playing) return;
      let last = performance.now();
      const step = (now) => {
        if (!bus.playing || !tl.isConnected) { bus.playing = false; return; }
        const lo = +tl.dataset.start, hi = +tl.dataset.end;
        let t = bus.t + (now - last) / 1000;
        last = now;
        if (t > hi || t < lo) t = lo;
        bus.setTime(t);
        requestAnimationFrame(step);
      };
      requestAnimationFrame(step);
    };
  }
  const setup = () => {
    for (const view of element.querySelectorAll(".mvt-view")) { bus.views.add(view); bus.paint(view); }
    if (element.querySelector(".mvt-pending") && !(Date.now() - (bus.scrolledAt || 0) < 5000)) {
      // a comparison started: bring the panels into view (once), where its results will stream in
      bus.scrolledAt = Date.now();
      const top = document.querySelector("#view-controls");
      if (top && top.getBoundingClientRect().top > window.innerHeight * 0.5) top.scrollIntoView({ behavior: "smooth", block: "start" });
    }
    const tl = element.querySelector(".mvt-timeline");
    if (tl && !tl.dataset.ready) {
      tl.dataset.ready = "1";
      bus.timelines.add(tl);
      const slider = tl.querySelector(".mvt-slider");
      slider.addEventListener("input", () => bus.setTime(parseFloat(slider.value)));
      tl.querySelector(".mvt-play").addEventListener("click", () => bus.play(tl));
      const lo = +tl.dataset.start, hi = +tl.dataset.end;
      bus.setTime(bus.t >= lo && bus.t <= hi ? bus.t : lo);
    }
  };
  setup();
  if (typeof watch === "function") watch("value", setup);
})();
