"""A one-command browser demo: `python -m fer_keras demo` serves a page where a photo (upload or webcam
snapshot) comes back annotated, with per-class bars. Standard library HTTP server, no web framework.

POST /api/predict with the image bytes -> {"faces": [...], "note": ..., "image": "data:image/png;base64,..."}.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_UPLOAD = 20 * 1024 * 1024

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fer-keras demo</title>
<style>
body{font-family:sans-serif;max-width:860px;margin:2em auto;padding:0 1em}
#bars div.row{display:flex;align-items:center;margin:2px 0}
#bars span.name{width:80px}#bars div.bar{background:#2a8;height:14px}
#result{max-width:100%;border:1px solid #ccc}
</style></head><body>
<h1>fer-keras: facial expression recognition</h1>
<p>Model: <code id="model">MODEL</code>. Upload a photo or take a webcam snapshot; faces are found with
OpenCV's Haar cascade and classified into seven expressions.</p>
<input type="file" id="file" accept="image/*">
<button id="camera">Use webcam</button> <button id="snap" disabled>Snapshot</button>
<video id="video" width="320" height="240" autoplay playsinline style="display:none"></video>
<p id="status">Choose an image.</p>
<img id="result" alt="annotated result">
<div id="bars"></div>
<script>
async function send(blob) {
  document.getElementById('status').textContent = 'Analysing...';
  const r = await fetch('/api/predict', {method: 'POST', body: blob});
  const out = await r.json();
  if (!r.ok) { document.getElementById('status').textContent = 'Error: ' + out.error; return; }
  document.getElementById('result').src = out.image;
  const bars = document.getElementById('bars'); bars.innerHTML = '';
  if (out.faces.length === 0) { document.getElementById('status').textContent = out.note; return; }
  document.getElementById('status').textContent = out.faces.length + ' face(s); first face: ' + out.faces[0].label;
  for (const [name, p] of Object.entries(out.faces[0].probabilities)) {
    const row = document.createElement('div'); row.className = 'row'; row.dataset.cls = name;
    row.innerHTML = '<span class="name">' + name + '</span><div class="bar" style="width:' +
      Math.round(300 * p) + 'px"></div><span>&nbsp;' + p.toFixed(2) + '</span>';
    bars.appendChild(row);
  }
}
document.getElementById('file').addEventListener('change', e => { if (e.target.files[0]) send(e.target.files[0]); });
document.getElementById('camera').addEventListener('click', async () => {
  const video = document.getElementById('video');
  video.srcObject = await navigator.mediaDevices.getUserMedia({video: true});
  video.style.display = 'block'; document.getElementById('snap').disabled = false;
});
document.getElementById('snap').addEventListener('click', () => {
  const video = document.getElementById('video'); const c = document.createElement('canvas');
  c.width = video.videoWidth; c.height = video.videoHeight; c.getContext('2d').drawImage(video, 0, 0);
  c.toBlob(send, 'image/jpeg', 0.9);
});
</script></body></html>"""


def analyse_bytes(recognizer, payload: bytes) -> dict:
    """Run the recognizer on uploaded image bytes: faces, note, annotated PNG as a data URL."""
    from PIL import Image

    from fer_keras import apply

    if not payload:
        raise apply.ImageError("upload: empty request body. Fix: send the image file's bytes.")
    if len(payload) > MAX_UPLOAD:
        raise apply.ImageError(f"upload: {len(payload):,} bytes is over the {MAX_UPLOAD:,}-byte limit.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(payload)
        grey, rgb = apply.read_image_and_color(path)
        faces = recognizer.analyse(grey)
        annotated = apply.annotate(rgb, faces)
    buf = io.BytesIO()
    Image.fromarray(annotated).save(buf, format="PNG")
    return {"faces": faces, "note": None if faces else "No face found in this image.",
            "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


def make_server(recognizer, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """The demo's HTTP server (call serve_forever, or run it in a thread for tests)."""
    from fer_keras import apply

    page = PAGE.replace("MODEL", recognizer.path.name).encode()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code, body: bytes, kind: str):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path in ("/", "/index.html"):
                self._send(200, page, "text/html; charset=utf-8")
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

        def do_POST(self):  # noqa: N802
            if self.path != "/api/predict":
                self._send(404, b'{"error": "not found"}', "application/json")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_UPLOAD:
                self._send(413, json.dumps({"error": "image too large"}).encode(), "application/json")
                return
            try:
                result = analyse_bytes(recognizer, self.rfile.read(length))
                self._send(200, json.dumps(result).encode(), "application/json")
            except apply.ImageError as err:
                message = str(err).replace(str(Path(tempfile.gettempdir())), "").lstrip("/")
                self._send(400, json.dumps({"error": message}).encode(), "application/json")

        def log_message(self, *args):  # keep the console quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)
