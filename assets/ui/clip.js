() => {
  // mvt-lens, the clip box. (1) A file the browser cannot play (HEVC, 10-bit…) is replaced by an H.264 preview
  // as soon as the server has made one; until then the player's "Video not playable" error is held back here
  // (a real problem reaches the page as the app's own banner). (2) A GIF dropped on the clip box goes to the
  // "GIF or another video file" button, whose upload the app converts; the video box alone would drop it.
  const inClip = (el) => el && el.closest && el.closest("#clip");
  window.addEventListener("error", (e) => {
    if (e.target && e.target.tagName === "VIDEO" && inClip(e.target)) e.stopImmediatePropagation();
  }, true);
  window.addEventListener("drop", (e) => {
    const files = e.dataTransfer && e.dataTransfer.files;
    if (!inClip(e.target) || !files || !files.length) return;
    const file = files[0];
    if (!(file.type === "image/gif" || /\.gif$/i.test(file.name))) return;
    const input = document.querySelector("input[type=file][accept*='.gif']");
    if (!input) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    const dt = new DataTransfer();
    dt.items.add(file);
    input.files = dt.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }, true);
}
