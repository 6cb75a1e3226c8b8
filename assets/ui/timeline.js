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
      if (text) text.textContent = `frame ${k + 1} of ${times.length} · seen at ${times[k].toFixed(2)} s`;
      for (const m of view.querySelectorAll(".mvt-qmark[data-frames]")) {  // an asked point: solid on its token's frames
        const on = m.dataset.frames === "" || m.dataset.frames.split(",").includes(String(k));
        m.classList.toggle("mvt-off", !on);
      }
    };
    // Ask a point: a click on any picture sends (model, time, where in the picture) to the hidden #query-point
    // box, whose input event asks the server (lens/ui/asking.py); the way back sends {"clear": 1}.
    bus.ask = (what) => {
      const box = document.querySelector("#query-point textarea, #query-point input");
      if (!box) return;
      box.value = JSON.stringify({ ...what, nonce: Date.now() });
      box.dispatchEvent(new Event("input", { bubbles: true }));
    };
    document.addEventListener("click", (e) => {
      if (e.target.closest(".mvt-query-clear")) { e.preventDefault(); return bus.ask({ clear: 1 }); }
      const frame = e.target.closest(".mvt-view .mvt-frame");
      const view = frame && frame.closest(".mvt-view");
      if (!view || view.dataset.error || view.classList.contains("mvt-pending") || view.dataset.frame === undefined) return;
      const r = frame.getBoundingClientRect();
      const u = Math.min(Math.max((e.clientX - r.left) / r.width, 0), 1);
      const v = Math.min(Math.max((e.clientY - r.top) / r.height, 0), 1);
      bus.asked = performance.now();
      bus.ask({ model: view.dataset.model, time: +view.dataset.frameTime, frame: +view.dataset.frame, u, v });
    });
    bus.setTime = (t) => {
      bus.t = t;
      for (const tl of bus.timelines) bus.moveTimeline(tl);
      for (const v of bus.views) if (v.isConnected) bus.paint(v); else bus.views.delete(v);
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
