import { effect } from '@preact/signals-core'
import { sql } from 'tidelog'
import { newTodo, schema, setDone } from './schema.js'
import { openStore } from './store.js'

const $ = (id) => document.getElementById(id)

function render(store) {
  const todos = store.query(sql`SELECT id, text, completed FROM todos ORDER BY created_at, id`)
  effect(() => {
    $('todos').replaceChildren(
      ...todos.value.map((todo) => {
        const li = document.createElement('li')
        li.dataset.id = todo.id
        li.className = todo.completed ? 'completed' : ''
        li.innerHTML = '<input type="checkbox"><span class="text"></span><button type="button" class="delete" aria-label="Delete">×</button>'
        li.querySelector('input').checked = todo.completed === 1
        li.querySelector('.text').textContent = todo.text
        return li
      }),
    )
  })
  effect(() => {
    const { state, pending, head, error } = store.sync.status.value
    $('status').dataset.state = state
    $('sync-state').textContent = state
    $('sync-pending').textContent = `${pending} pending`
    $('sync-head').textContent = `head ${head}`
    $('status').title = error?.message ?? ''
  })
}

function wire(store) {
  const input = $('new-todo')
  input.disabled = false
  $('add-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const text = input.value.trim()
    if (text) store.commit(newTodo(text))
    input.value = ''
  })
  $('todos').addEventListener('click', (event) => {
    const id = event.target.closest('li')?.dataset.id
    if (!id) return
    if (event.target.matches('input')) store.commit(setDone(id, event.target.checked))
    if (event.target.matches('.delete')) store.commit(schema.events.todoDeleted({ id }))
  })
}

// Await the store before rendering: queries read its state.
openStore().then(
  (store) => {
    render(store)
    wire(store)
  },
  (error) => {
    $('error').textContent = error.message
    $('error').hidden = false
  },
)
