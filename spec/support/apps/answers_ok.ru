# frozen_string_literal: true

# The smallest app the limit and socket specs need: /workers answers
# Iodine::Base.workers_alive, anything else answers "ok".
app = lambda do |env|
  if env["PATH_INFO"] == "/workers"
    alive = Iodine::Base.respond_to?(:workers_alive) ? Iodine::Base.workers_alive.to_s : "unknown"
    [200, { "content-type" => "text/plain" }, [alive]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
