/// The catalogue's one stylesheet and its few lines of script, served from `dlhubd` itself
/// (`/-/style.css`, `/-/copy.js`): nothing is loaded from outside the cluster.
enum WebAssets {
    /// Colours are chosen for contrast (WCAG AA: 4.5:1 for text; the browser test measures it).
    static let stylesheet = """
        :root { --ink: #1b1b1b; --muted: #4a4a4a; --paper: #ffffff; --band: #10304f; --band-ink: #ffffff;
          --link: #0a4f94; --line: #c9ced4; --soft: #f3f5f7; --warn: #7a1f00; --warn-paper: #fff3ee; }
        * { box-sizing: border-box; }
        html { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; line-height: 1.5;
          color: var(--ink); background: var(--paper); }
        body { margin: 0; }
        a { color: var(--link); }
        a:focus, button:focus, input:focus { outline: 3px solid #f2a900; outline-offset: 2px; }
        .skip { position: absolute; left: -9999px; }
        .skip:focus { left: 1rem; top: 1rem; background: var(--paper); padding: .5rem; z-index: 2; }
        .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
        header { background: var(--band); color: var(--band-ink); padding: .75rem 1rem; display: flex; flex-wrap: wrap;
          gap: .75rem 1.5rem; align-items: center; }
        header a.brand { color: var(--band-ink); font-weight: 700; font-size: 1.25rem; text-decoration: none; }
        header form[role=search] { display: flex; gap: .5rem; flex: 1 1 16rem; }
        header input[type=search] { flex: 1; min-width: 0; }
        header .session { margin: 0; font-size: .9rem; color: var(--band-ink); }
        header .session code { color: var(--band-ink); background: transparent; }
        input, button { font: inherit; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: 4px;
          color: var(--ink); background: var(--paper); }
        button { cursor: pointer; background: var(--soft); }
        main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
        footer { border-top: 1px solid var(--line); color: var(--muted); padding: 1rem; font-size: .9rem; text-align: center; }
        h1 { font-size: 1.75rem; line-height: 1.25; margin: .5rem 0; overflow-wrap: anywhere; }
        h2 { font-size: 1.3rem; margin-top: 2rem; }
        hgroup p.meta, .meta { color: var(--muted); margin: 0; overflow-wrap: anywhere; }
        .filters form { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; }
        .filters form p { margin: 0; display: flex; flex-direction: column; }
        .filters label { font-size: .85rem; color: var(--muted); }
        .filters h2 { margin-top: .5rem; font-size: 1rem; }
        .filters h3 { font-size: .95rem; margin: .75rem 0 .25rem; }
        ul.facets, ul.tags { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: .25rem .75rem; }
        ul.tags li { background: var(--soft); border: 1px solid var(--line); border-radius: 999px; padding: 0 .6rem; font-size: .9rem; }
        ol.results { list-style: none; padding: 0; }
        li.card { border: 1px solid var(--line); border-radius: 6px; padding: .75rem 1rem; margin: .75rem 0; }
        li.card h2 { margin: 0; font-size: 1.15rem; overflow-wrap: anywhere; }
        li.card p { margin: .25rem 0; }
        .authors { font-style: italic; }
        nav.pages { display: flex; gap: 1rem; justify-content: center; margin: 1rem 0; }
        dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; }
        dl.summary dt { font-weight: 600; }
        dl.summary dd { margin: 0; overflow-wrap: anywhere; }
        code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9rem; }
        code { background: var(--soft); padding: 0 .2rem; border-radius: 3px; }
        pre { background: var(--soft); border: 1px solid var(--line); padding: .75rem; overflow-x: auto; white-space: pre-wrap;
          overflow-wrap: anywhere; }
        pre code { background: none; padding: 0; }
        .digest { overflow-wrap: anywhere; }
        figure.snippet { margin: 1rem 0; }
        figure.snippet figcaption { font-weight: 600; display: flex; gap: .75rem; align-items: center; flex-wrap: wrap; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; border-bottom: 1px solid var(--line); padding: .35rem .5rem; vertical-align: top; }
        table.versions td:nth-child(3) { overflow-wrap: anywhere; }
        tr.current { background: var(--soft); }
        .tombstone { border: 2px solid var(--warn); background: var(--warn-paper); color: var(--warn); padding: .5rem 1rem;
          border-radius: 6px; }
        .tombstone h2 { margin-top: .25rem; }
        .model-card .card-body { border-left: 4px solid var(--line); padding-left: 1rem; overflow-wrap: anywhere; }
        .model-card .image { color: var(--muted); font-style: italic; }
        .empty { color: var(--muted); }
        @media (max-width: 40rem) {
          dl.summary { grid-template-columns: 1fr; }
          dl.summary dt { margin-top: .5rem; }
          table.versions th:nth-child(3), table.versions td:nth-child(3) { display: none; }
        }
        @media print {
          header form[role=search], header .session, .skip, button, footer { display: none; }
          header { background: none; color: #000; padding: 0; }
          header a.brand { color: #000; }
          a { color: #000; }
          main { max-width: none; }
          pre { white-space: pre-wrap; }
        }
        """

    /// Copy buttons: shown only when script runs (they are `hidden` in the page); copies the text of
    /// the element the button names and says so.
    static let copyScript = """
        "use strict";
        document.addEventListener("DOMContentLoaded", function () {
          document.querySelectorAll("button[data-copy]").forEach(function (button) {
            var target = document.getElementById(button.getAttribute("data-copy"));
            if (!target) { return; }
            button.hidden = false;
            button.addEventListener("click", function () {
              var text = target.textContent;
              var done = function () { button.textContent = "Copied"; button.setAttribute("data-copied", "true"); };
              if (navigator.clipboard && window.isSecureContext) {
                navigator.clipboard.writeText(text).then(done, function () { fallback(text, done); });
              } else {
                fallback(text, done);
              }
            });
          });
          function fallback(text, done) {
            var area = document.createElement("textarea");
            area.value = text;
            area.setAttribute("readonly", "");
            area.className = "visually-hidden";
            document.body.appendChild(area);
            area.select();
            try { if (document.execCommand("copy")) { done(); } } finally { document.body.removeChild(area); }
          }
        });
        """
}
