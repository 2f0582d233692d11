"""The dashboard: pages, their selectors, charts and the metrics export. It sits above both apps
(it reads registry and evals alike); nothing below it imports it."""
