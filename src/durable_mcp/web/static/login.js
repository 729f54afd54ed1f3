// The login form: the token goes in a JSON POST, never in a URL; the server
// answers with an HttpOnly cookie, and the page reloads as the one asked for.
"use strict";

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/jobs/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: document.getElementById("token").value }),
  });
  if (response.ok) location.reload();
  else {
    const answer = await response.json().catch(() => ({}));
    document.getElementById("error").textContent = answer.error || "Not logged in.";
  }
});
