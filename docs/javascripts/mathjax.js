// MathJax settings for pymdownx.arithmatex (generic mode): $...$ inline, $$...$$ display.
// MathJax itself is served from this site (javascripts/mathjax/tex-svg.js, MathJax 3.2.2,
// Apache-2.0, see javascripts/mathjax/LICENSE): no CDN, so the maths renders offline.
// The SVG output draws its glyphs itself and needs no font files. To update it:
// `npm pack mathjax@3`, then copy the tarball's package/es5/tex-svg.js and package/LICENSE
// into javascripts/mathjax/.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
  svg: {
    fontCache: "global",
  },
};

// Material's instant navigation swaps pages without a reload: typeset each new page.
// Until MathJax has started (the first page, which it typesets by itself) or if it could
// not be loaded, there is nothing to call, and the TeX source stays readable as it is.
if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    const mathjax = window.MathJax;
    if (!mathjax || typeof mathjax.typesetPromise !== "function") {
      return;
    }
    // CHTML keeps a cache of font data to clear; the SVG output used here has none.
    if (typeof mathjax.startup.output.clearCache === "function") {
      mathjax.startup.output.clearCache();
    }
    mathjax.typesetClear();
    mathjax.texReset();
    mathjax.typesetPromise();
  });
}
