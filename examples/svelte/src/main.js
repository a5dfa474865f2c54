import { mount } from 'svelte'
import App from './App.svelte'
import { openStore } from './store.js'
import './style.css'

// Await the store before mounting: the components' queries read its state.
openStore().then(
  (store) => mount(App, { target: document.getElementById('app'), props: { store } }),
  (error) => {
    const banner = document.getElementById('error')
    banner.textContent = error.message
    banner.hidden = false
  },
)
