# frozen_string_literal: true

# GC is off for the whole process, so nothing that waits for a GC (finalizers, Ruby IO
# objects) ever releases a request's resources: only the server can.
GC.disable

# POST /read reads rack.input to the end and answers its size; POST /ignore does not touch
# it; anything else answers "ok".
app = lambda do |env|
  case env["PATH_INFO"]
  when "/read"
    [200, { "content-type" => "text/plain" }, [env["rack.input"].read.bytesize.to_s]]
  when "/ignore"
    [200, { "content-type" => "text/plain" }, ["ignored"]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
