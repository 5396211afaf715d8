//! tetherd library.
