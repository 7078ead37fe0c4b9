# frozen_string_literal: true

# GET /busy burns 0.5 s of CPU (no sleep), GET /slow sleeps 3 s, anything else (/fast)
# answers at once.
app = lambda do |env|
  case env["PATH_INFO"]
  when "/busy"
    stop_at = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 0.5
    n = 0
    n += 1 while Process.clock_gettime(Process::CLOCK_MONOTONIC) < stop_at
    [200, { "content-type" => "text/plain" }, ["busy #{n > 0}"]]
  when "/slow"
    sleep 3
    [200, { "content-type" => "text/plain" }, ["slow"]]
  else
    [200, { "content-type" => "text/plain" }, ["fast"]]
  end
end

run app
