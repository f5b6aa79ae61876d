// The demo page: chat rooms over the main namespace, a news feed over "/news".
// `io` is the official socket.io client, loaded by index.html.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const name = params.get("name") || "guest-" + Math.random().toString(36).slice(2, 6);

const chat = io({ auth: { name } });
const news = io("/news", { auth: { name } });
let currentRoom = null;
let myRooms = [];

function item(list, parts, className) {
  const li = document.createElement("li");
  if (className) li.className = className;
  for (const [cls, text] of parts) {
    if (li.childNodes.length) li.append(" ");
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    li.append(span);
  }
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function showError(reply) {
  $("error").textContent = reply && reply.error ? reply.error : "";
  return !(reply && reply.error);
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren();
  for (const room of myRooms) {
    const li = document.createElement("li");
    li.dataset.room = room;
    li.textContent = room;
    li.className = room === currentRoom ? "current" : "";
    li.onclick = () => { currentRoom = room; renderRooms(); };
    const leave = document.createElement("button");
    leave.textContent = "×";
    leave.title = "leave " + room;
    leave.onclick = (event) => {
      event.stopPropagation();
      chat.emit("leave", room, (reply) => {
        if (!showError(reply)) return;
        myRooms = reply.rooms;
        if (currentRoom === room) currentRoom = myRooms[0] || null;
        renderRooms();
      });
    };
    li.append(leave);
    list.append(li);
  }
  $("message").placeholder = currentRoom ? "message to " + currentRoom : "join a room first";
}

chat.on("connect", () => {
  $("status").textContent = "connected";
  $("status").className = "online";
  // rooms live on the server: after a reconnection, join them again
  for (const room of myRooms) chat.emit("join", room);
});
chat.on("disconnect", (reason) => {
  $("status").textContent = "disconnected (" + reason + ")";
  $("status").className = "offline";
});
chat.on("welcome", ({ name }) => { $("me").textContent = name; });
chat.on("message", (m) => item($("log"), [["room", m.room], ["from", m.from + ":"], ["text", m.text]], "message"));
chat.on("system", (m) => item($("log"), [["room", m.room], ["text", m.text]], "system"));

$("join-form").onsubmit = (event) => {
  event.preventDefault();
  const room = $("room").value.trim();
  chat.emit("join", room, (reply) => {
    if (!showError(reply)) return;
    myRooms = reply.rooms;
    currentRoom = reply.room;
    renderRooms();
    item($("log"), [["room", reply.room], ["text", `you joined (${reply.members} here)`]], "system");
  });
};

$("message-form").onsubmit = (event) => {
  event.preventDefault();
  const text = $("message").value;
  chat.emit("message", { room: currentRoom, text }, (reply) => {
    if (showError(reply)) $("message").value = "";
  });
};

news.on("history", (items) => {
  $("news-list").replaceChildren();
  for (const n of items) item($("news-list"), [["from", n.from + ":"], ["text", n.text]]);
});
news.on("news", (n) => item($("news-list"), [["from", n.from + ":"], ["text", n.text]]));

$("news-form").onsubmit = (event) => {
  event.preventDefault();
  news.emit("post", $("news-text").value, (reply) => {
    if (showError(reply)) $("news-text").value = "";
  });
};

renderRooms();
