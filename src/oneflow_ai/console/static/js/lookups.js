// Names the pages show instead of ids (keys, projects, models): read once per page view,
// and quietly empty when the credential may not list them.
import { get } from "./api.js";
import { can } from "./session.js";

async function listOf(path, params) {
  try {
    return (await get(path, params)).data;
  } catch {
    return [];
  }
}

export const loadProjects = () => (can("projects:read") ? listOf("/api/v1/projects") : Promise.resolve([]));
export const loadKeys = (project) => (can("keys:read") ? listOf("/api/v1/keys", { project_id: project }) : Promise.resolve([]));
export const loadModels = async () => (await listOf("/v1/models")).map((m) => m.id);

export function keyNamer(keys) {
  const names = new Map(keys.map((k) => [k.id, k.name]));
  return (id) => (id ? names.get(id) || id : "none");
}
