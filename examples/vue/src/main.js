import { createApp } from 'vue'
import App from './App.vue'
import { openStore } from './store.js'
import './style.css'

// Await the store before mounting: the components' queries read its state.
openStore().then(
  (store) => createApp(App, { store }).mount('#app'),
  (error) => {
    const banner = document.getElementById('error')
    banner.textContent = error.message
    banner.hidden = false
  },
)
