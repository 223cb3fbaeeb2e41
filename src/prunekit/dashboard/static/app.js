// The page's router: #/ (runs), #/run/<id>/<tab>, #/compare/<id>,<id>…, #/launch.
import {clear, errorBox} from "./dom.js";
import {launchView} from "./launch.js";
import {runView} from "./run.js";
import {compareView, runsView} from "./runs.js";

const main = document.getElementById("app");
let stop = null;

async function route() {
  if (stop) stop();
  stop = null;
  const [, view, arg, tab] = location.hash.replace(/^#/, "").split("/");
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#/${view === "launch" ? "launch" : ""}`);
  }
  try {
    if (view === "run" && arg) stop = await runView(main, arg, tab || "results");
    else if (view === "compare" && arg) stop = await compareView(main, arg.split(","));
    else if (view === "launch") stop = await launchView(main);
    else stop = await runsView(main);
  } catch (err) {
    clear(main, errorBox(err.message));
  }
}

window.addEventListener("hashchange", route);
route();
