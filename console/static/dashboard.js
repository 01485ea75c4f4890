// The dashboard's charts: the series come from the page itself (a JSON block the server
// rendered), so nothing is fetched and no inline script is needed (CSP: 'self' only).
(function () {
  "use strict";
  function draw() {
    var node = document.getElementById("dashboard-data");
    if (!node || typeof Chart === "undefined") { return; }
    var data = JSON.parse(node.textContent);
    var common = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }
    };
    new Chart(document.getElementById("chart-transactions"), {
      type: "bar",
      data: {
        labels: data.days,
        datasets: [
          { label: "Earns", data: data.earns, backgroundColor: "#1f6feb" },
          { label: "Redemptions", data: data.redemptions, backgroundColor: "#f79009" }
        ]
      },
      options: common
    });
    new Chart(document.getElementById("chart-points"), {
      type: "line",
      data: {
        labels: data.days,
        datasets: [
          { label: "Issued", data: data.issued, borderColor: "#12b76a", backgroundColor: "#12b76a", tension: 0.2 },
          { label: "Redeemed", data: data.redeemed, borderColor: "#f79009", backgroundColor: "#f79009", tension: 0.2 },
          { label: "Expired", data: data.expired, borderColor: "#98a2b3", backgroundColor: "#98a2b3", tension: 0.2 }
        ]
      },
      options: common
    });
    document.body.setAttribute("data-charts", "drawn");
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
