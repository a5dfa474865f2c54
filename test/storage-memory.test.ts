import { memoryStorage } from 'tidelog'
import { runStorageConformance } from 'tidelog/testing'

runStorageConformance('memoryStorage()', () => memoryStorage())
