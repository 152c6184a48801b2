// Category, price range and attribute chips. Calls onChange() whenever the filters change.

const MAX_CHIPS = 14;

const chipKey = (key, value) => `${key}\u001f${JSON.stringify(value)}`;

export class Filters {
  constructor({ onChange }) {
    this.onChange = onChange;
    this.selectedAttributes = new Map(); // chipKey -> [key, value]
    this.el = {
      category: document.getElementById("category"),
      priceMin: document.getElementById("price-min"),
      priceMax: document.getElementById("price-max"),
      chips: document.getElementById("attribute-chips"),
      priceError: document.getElementById("price-error"),
    };
    this.el.category.addEventListener("change", () => this.onChange());
    let timer = null;
    for (const input of [this.el.priceMin, this.el.priceMax]) {
      input.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => this.onChange(), 500);
      });
      input.addEventListener("change", () => {
        clearTimeout(timer);
        this.onChange();
      });
    }
  }

  setCategories(categories) {
    const select = this.el.category;
    for (const { name, count } of categories) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = `${name} (${count})`;
      select.append(option);
    }
  }

  /**
   * What is wrong with the price fields, in words, or null. A wrong range is said, never quietly
   * swapped or dropped: the shopper must see the filter that is actually applied.
   */
  priceProblem() {
    const { priceMin, priceMax } = this.el;
    const read = (input) => (input.value === "" ? null : Number(input.value));
    const min = read(priceMin);
    const max = read(priceMax);
    const bad = (n, input) => input.validity.badInput || (n !== null && !Number.isFinite(n));
    if (bad(min, priceMin) || bad(max, priceMax)) return { text: "Prices must be numbers.", fields: [priceMin, priceMax] };
    if (min !== null && min < 0) return { text: "The minimum price can't be negative.", fields: [priceMin] };
    if (max !== null && max < 0) return { text: "The maximum price can't be negative.", fields: [priceMax] };
    if (min !== null && max !== null && min > max) {
      return { text: "The minimum price is above the maximum.", fields: [priceMin, priceMax] };
    }
    return null;
  }

  /** Show (or clear) the price problem next to the fields; true when the prices are usable. */
  checkPrices() {
    const problem = this.priceProblem();
    for (const input of [this.el.priceMin, this.el.priceMax]) {
      input.setAttribute("aria-invalid", String(Boolean(problem && problem.fields.includes(input))));
    }
    this.el.priceError.textContent = problem ? problem.text : "";
    this.el.priceError.hidden = !problem;
    return !problem;
  }

  /** Filters as the API client expects them (prices already checked by checkPrices()). */
  value() {
    const price = (input) => {
      const n = input.value === "" ? NaN : Number(input.value);
      return Number.isFinite(n) && n >= 0 ? n : null;
    };
    const priceMin = price(this.el.priceMin);
    const priceMax = price(this.el.priceMax);
    const attributes = {};
    for (const [key, value] of this.selectedAttributes.values()) attributes[key] = value;
    const category = this.el.category.value;
    return { categories: category ? [category] : [], priceMin, priceMax, attributes };
  }

  isActive() {
    const f = this.value();
    return f.categories.length > 0 || f.priceMin !== null || f.priceMax !== null || this.selectedAttributes.size > 0;
  }

  clear() {
    this.el.category.value = "";
    this.el.priceMin.value = "";
    this.el.priceMax.value = "";
    this.selectedAttributes.clear();
    this.checkPrices();
    this.renderChips([]);
  }

  /** Put filters read from the address bar into the fields (no onChange). */
  set({ category = "", priceMin = null, priceMax = null, attributes = {} }) {
    const select = this.el.category;
    if (category && ![...select.options].some((o) => o.value === category)) {
      const option = document.createElement("option");
      option.value = category;
      option.textContent = category;
      select.append(option);
    }
    select.value = category;
    this.el.priceMin.value = priceMin ?? "";
    this.el.priceMax.value = priceMax ?? "";
    this.selectedAttributes.clear();
    for (const [key, value] of Object.entries(attributes)) this.selectedAttributes.set(chipKey(key, value), [key, value]);
    this.checkPrices();
    this.renderChips([]);
  }

  /** Offer the most common attribute values of these results as chips (selected ones stay). */
  renderChips(results) {
    const counts = new Map();
    for (const product of results) {
      for (const [key, value] of Object.entries(product.attributes || {})) {
        if (value === null || typeof value === "object") continue;
        const id = chipKey(key, value);
        const entry = counts.get(id) || { key, value, count: 0 };
        entry.count += 1;
        counts.set(id, entry);
      }
    }
    for (const [id, [key, value]] of this.selectedAttributes) {
      if (!counts.has(id)) counts.set(id, { key, value, count: Infinity });
    }
    const chips = [...counts.entries()]
      .sort((a, b) => b[1].count - a[1].count || String(a[1].value).localeCompare(String(b[1].value)))
      .slice(0, MAX_CHIPS);
    const container = this.el.chips;
    container.replaceChildren();
    for (const [id, { key, value }] of chips) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "chip attribute-chip";
      const pressed = this.selectedAttributes.has(id);
      button.setAttribute("aria-pressed", String(pressed));
      button.dataset.key = key;
      button.dataset.value = String(value);
      const label = document.createElement("span");
      label.className = "chip-key";
      label.textContent = `${key.replaceAll("_", " ")}:`;
      button.append(label, ` ${value}`);
      button.addEventListener("click", () => {
        if (this.selectedAttributes.has(id)) this.selectedAttributes.delete(id);
        else this.selectedAttributes.set(id, [key, value]);
        this.onChange();
      });
      container.append(button);
    }
    container.hidden = chips.length === 0;
  }
}
