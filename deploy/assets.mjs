// Copies the built distributions of the npm packages the portal uses into static/dist.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "static", "dist");
mkdirSync(out, { recursive: true });
const files = {
  "htmx.org/dist/htmx.min.js": "htmx.min.js",
  // Leaflet (device location map): its stylesheet finds the marker images next to itself.
  "leaflet/dist/leaflet.js": "leaflet/leaflet.js",
  "leaflet/dist/leaflet.css": "leaflet/leaflet.css",
  "leaflet/dist/images/marker-icon.png": "leaflet/images/marker-icon.png",
  "leaflet/dist/images/marker-icon-2x.png": "leaflet/images/marker-icon-2x.png",
  "leaflet/dist/images/marker-shadow.png": "leaflet/images/marker-shadow.png",
  "leaflet/dist/images/layers.png": "leaflet/images/layers.png",
  "leaflet/dist/images/layers-2x.png": "leaflet/images/layers-2x.png",
  // uPlot (telemetry charts on the device page and the fleet dashboard).
  "uplot/dist/uPlot.iife.min.js": "uplot/uPlot.iife.min.js",
  "uplot/dist/uPlot.min.css": "uplot/uPlot.min.css",
};
for (const [from, to] of Object.entries(files)) {
  mkdirSync(dirname(join(out, to)), { recursive: true });
  copyFileSync(join(root, "node_modules", from), join(out, to));
}
console.log(`assets: ${Object.keys(files).length} file(s) in static/dist`);
