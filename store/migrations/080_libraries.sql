-- UDF libraries (POST /api/v1/libraries): a tenant's JARs and Python packages, each version
-- immutable (its bytes are in the tenant's lake under libraries/{name}/{version}/{file},
-- their SHA-256 here), with the functions it declares. Tasks pin a version by name.
CREATE TABLE library_versions (
  tenant      text NOT NULL,
  name        text NOT NULL,
  version     text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('jar', 'python')),
  file        text NOT NULL,              -- the object's name under libraries/{name}/{version}/
  sha256      text NOT NULL,
  size_bytes  bigint NOT NULL,
  created_by  text,                       -- the API key id that uploaded it
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, name, version)
);

CREATE TABLE library_functions (
  tenant      text NOT NULL,
  name        text NOT NULL,
  version     text NOT NULL,
  function    text NOT NULL,
  class       text NOT NULL,              -- JVM class (jar) or module.attribute (python)
  return_type text,
  PRIMARY KEY (tenant, name, version, function),
  FOREIGN KEY (tenant, name, version) REFERENCES library_versions (tenant, name, version) ON DELETE CASCADE
);
