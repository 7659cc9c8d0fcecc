// The session page's replay: asciinema-player (loaded before this file)
// plays the session's asciicast, fetched from the console's own URL (the
// data-cast attribute of #player). Nothing of the session is put into the
// page by this script: the player draws the terminal itself.
'use strict';
(function () {
  const el = document.getElementById('player');
  if (!el || typeof AsciinemaPlayer === 'undefined') {
    return;
  }
  AsciinemaPlayer.create(el.dataset.cast, el, {
    fit: 'width',
    idleTimeLimit: 2,
    preload: true,
    controls: true,
  });
})();
