// mvt-lens: one clip time shared by every panel. Loaded once per gr.HTML panel (js_on_load); the state lives on
// window.mvtLens so that the timeline and every panel see the same time. A panel shows, of the frames its
// model saw (data-times, clip seconds), the one nearest to the shared time; the slider and play/pause move it.
// Nothing here talks to the server: a slider step only moves a background image (see lens/render/timeline.py).
// Clicks and slider moves are handled by ONE listener on the document, installed once: Gradio re-renders an
// HTML component in place on every update (the same elements, new attributes), so listeners added per render
// would pile up and one click would toggle play several times.
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
    bus.timeline = () => {
      for (const tl of bus.timelines) if (tl.isConnected && tl.querySelector(".mvt-slider")) return tl;
      return document.querySelector(".mvt-timeline");
    };
    bus.setTime = (t) => {
      bus.t = t;
      for (const tl of [...bus.timelines]) bus.moveTimeline(tl);
      for (const v of [...bus.views]) if (v.isConnected) bus.paint(v); else bus.views.delete(v);
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
    bus.buttons = () => {
      for (const b of document.querySelectorAll(".mvt-play")) {
        b.textContent = bus.playing ? "❚❚" : "▶";
        b.setAttribute("aria-label", bus.playing ? "Pause" : "Play");
        b.setAttribute("aria-pressed", bus.playing ? "true" : "false");
      }
    };
    bus.pause = () => { bus.playing = false; bus.buttons(); };
    // Play: the shared time advances at the clip's own rate (one clip second per second: the frames each model
    // saw come at the rate they were sampled), from the start again after the end.
    bus.play = () => {
      if (bus.playing) return bus.pause();
      const tl = bus.timeline();
      if (!tl) return;
      bus.playing = true;
      bus.buttons();
      let last = performance.now();
      const step = (now) => {
        const cur = bus.timeline();
        if (!bus.playing || !cur) return bus.pause();
        const lo = +cur.dataset.start, hi = +cur.dataset.end;
        let t = bus.t + (now - last) / 1000;
        last = now;
        if (t > hi || t < lo) t = lo;
        bus.setTime(t);
        requestAnimationFrame(step);
      };
      requestAnimationFrame(step);
    };
    document.addEventListener("click", (e) => {
      const b = e.target && e.target.closest && e.target.closest(".mvt-play");
      if (b) { e.preventDefault(); bus.play(); }
      const c = e.target && e.target.closest && e.target.closest(".mvt-fold");
      if (c) {
        const tl = c.closest(".mvt-timeline");
        const folded = tl.classList.toggle("mvt-folded");
        bus.folded = folded;
        c.setAttribute("aria-expanded", folded ? "false" : "true");
        c.textContent = folded ? "curves ▾" : "curves ▴";
      }
    });
    document.addEventListener("input", (e) => {
      const s = e.target;
      if (s && s.classList && s.classList.contains("mvt-slider")) { bus.pause(); bus.setTime(parseFloat(s.value)); }
    });
  }
  const setup = () => {
    for (const view of element.querySelectorAll(".mvt-view")) { bus.views.add(view); bus.paint(view); }
    if (element.querySelector(".mvt-pending") && !(Date.now() - (bus.scrolledAt || 0) < 5000)) {
      // a comparison started: bring the results into view (once), where its panels will stream in
      bus.scrolledAt = Date.now();
      const top = document.querySelector("#progress") || document.querySelector("#view-controls");
      if (top && top.getBoundingClientRect().top > window.innerHeight * 0.5) top.scrollIntoView({ behavior: "smooth", block: "start" });
    }
    const tl = element.querySelector(".mvt-timeline");
    if (tl) {
      bus.timelines.add(tl);
      const bar = document.querySelector("#timeline");
      if (bar && !bus.padded && window.ResizeObserver) {  // however tall the sticky bar (a row per model's
        bus.padded = true;  // windows), a panel scrolled into view lands below it, never under it
        new ResizeObserver(() => {
          document.documentElement.style.scrollPaddingTop = `${Math.ceil(bar.getBoundingClientRect().height) + 8}px`;
        }).observe(bar);
      }
      if (bus.folded !== undefined) {  // the person's choice survives a new comparison
        tl.classList.toggle("mvt-folded", bus.folded);
        const c = tl.querySelector(".mvt-fold");
        if (c) { c.setAttribute("aria-expanded", bus.folded ? "false" : "true"); c.textContent = bus.folded ? "curves ▾" : "curves ▴"; }
      }
      const lo = +tl.dataset.start, hi = +tl.dataset.end;
      bus.buttons();
      bus.setTime(bus.t >= lo && bus.t <= hi ? bus.t : lo);
    }
  };
  setup();
  if (typeof watch === "function") watch("value", setup);
})();
