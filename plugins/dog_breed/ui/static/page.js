// Draws every chart the server put on the page ({data, layout} JSON from plotly's Python
// package) and submits the endpoint choice as soon as it changes.
(function () {
  document.querySelectorAll("[data-chart]").forEach(function (target) {
    var figure = JSON.parse(document.getElementById(target.dataset.chart).textContent);
    Plotly.newPlot(target, figure.data, figure.layout, { displaylogo: false, responsive: true });
  });
  var select = document.getElementById("endpoint");
  if (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  }
})();
