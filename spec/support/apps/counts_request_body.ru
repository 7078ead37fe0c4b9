# frozen_string_literal: true

# POST /count reads rack.input and answers how many bytes it held; /workers answers
# Iodine::Base.workers_alive; anything else answers "ok".
app = lambda do |env|
  case env["PATH_INFO"]
  when "/count"
    [200, { "content-type" => "text/plain" }, [env["rack.input"].read.bytesize.to_s]]
  when "/workers"
    alive = Iodine::Base.respond_to?(:workers_alive) ? Iodine::Base.workers_alive.to_s : "unknown"
    [200, { "content-type" => "text/plain" }, [alive]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
