// Render the list of towns on the page.
function renderTowns(towns) {
  const list = document.getElementById("towns");
  for (const town of towns) {
    const item = document.createElement("li");
    item.textContent = `${town.name} on the ${town.river}`;
    list.appendChild(item);
  }
}

fetch("/towns.json")
  .then((response) => response.json())
  .then(renderTowns);
