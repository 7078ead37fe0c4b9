# frozen_string_literal: true

# A WebSocket handler that forks on "fork": the child tries the connection it inherited
# (a copy of the parent's: it must read as closed and never be touched) and exits with a
# code that says what it saw; the parent writes that code back.
class Forker
  def on_message(client, data)
    return client.write("echo #{data}") unless data == "fork"

    pid = Process.fork do
      code = 0
      code |= 1 unless client.write("from the child").nil?
      code |= 2 if client.open?
      code |= 4 unless client.pending == -1
      code |= 8 unless client.close.nil? || client.close == client
      exit!(code)
    rescue Exception # rubocop:disable Lint/RescueException
      exit!(64)
    end
    _, status = Process.waitpid2(pid)
    client.write("child #{status.exitstatus}")
  end
end

run(lambda do |env|
  if env["rack.upgrade?"] == :websocket
    env["rack.upgrade"] = Forker.new
    [0, {}, []]
  else
    [200, {}, ["ok"]]
  end
end)
