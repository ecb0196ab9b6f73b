// Building elements from data, never from HTML strings: every field the console shows was
// written by a job or its caller (messages, errors, arguments, output), so none of it may
// ever be parsed as markup.

const SVG_NS = "http://www.w3.org/2000/svg";

// Set as properties (their state, not their markup); everything else is an attribute.
const PROPERTIES = new Set(["className", "value", "checked", "disabled", "hidden", "id", "title"]);

function build(element, props, children) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else if (PROPERTIES.has(name) && !(element instanceof SVGElement)) element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** An HTML element: `h("a", { href: "#/", text: "back" })`, children as further arguments. */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element; its attributes are always set as attributes (SVG has few properties). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** The element with this id; a missing one is a bug in dashboard.html, so say which. */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`dashboard.html has no #${id}`);
  return element;
}
