// MathJax 3, typesetting two kinds of math and nothing else:
//  - what pymdownx.arithmatex (generic mode) marked in pages and docstrings: \( \) and \[ \];
//  - the $...$ / $$...$$ of notebook Markdown cells rendered by mkdocs-jupyter
//    (whose own MathJax 2 loader is switched off: its script tag has an empty src).
// Typeset again after every instant-navigation page change of Material.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown",
  },
};

document$.subscribe(() => {
  if (window.MathJax && MathJax.typesetPromise) {
    MathJax.startup.output.clearCache();
    MathJax.typesetClear();
    MathJax.texReset();
    MathJax.typesetPromise();
  }
});
