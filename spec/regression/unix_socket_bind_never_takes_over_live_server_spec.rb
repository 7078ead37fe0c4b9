# frozen_string_literal: true

require "spec_helper"

# Binding a Unix socket path that a live server listens on must fail ("in use"), not unlink
# that server's socket and take its clients; a server removes only the socket file it
# created itself when it stops.
RSpec.describe "a Unix socket bind never takes over a live server's socket" do
  before do
    @path = File.join(Dir.tmpdir, "iodine-spec-#{Process.pid}-#{rand(1 << 30)}.sock")
    @servers = []
  end

  after do
    @servers.each(&:stop)
    File.delete(@path) if File.exist?(@path) || File.symlink?(@path)
  end

  # Starts a server on @path; with `wait`, returns once the socket accepts connections.
  def start_on_socket(wait: true)
    server = ServerProcess.new(["-t", "1", "-b", @path, app_path("answers_ok.ru")], bind: false, wait_for: nil)
    @servers << server
    wait_for_socket(server) if wait
    server
  end

  def wait_for_socket(server, timeout = 20)
    deadline = Time.now + timeout
    loop do
      begin
        UNIXSocket.new(@path).close
        return server
      rescue Errno::ENOENT, Errno::ECONNREFUSED
        raise "server exited early:\n#{server.log}" if server.exited?
        raise "server did not listen on #{@path} in #{timeout}s:\n#{server.log}" if Time.now > deadline

        sleep 0.05
      end
    end
  end

  # The whole answer to a GET / over the socket (until the server closes), bounded.
  def get_over_socket(timeout = 3)
    socket = UNIXSocket.new(@path)
    socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    read_for(socket, timeout).first
  ensure
    socket&.close
  end

  it "refuses to start a second server on a live server's socket path; the first keeps answering" do
    first = start_on_socket
    expect(get_over_socket).to match(/\AHTTP\/1\.1 200.*\r\n\r\nok\z/m)

    second = start_on_socket(wait: false)
    status = second.wait(10)
    second_log = second.log
    expect(status).not_to be_nil, "the second server did not exit:\n#{second_log}"
    expect(status.success?).to be(false), "the second server exited with #{status.inspect}:\n#{second_log}"
    expect(second_log).to match(/in use/i)

    expect(first.exited?).to be false
    expect(File.socket?(@path)).to be true
    expect(get_over_socket).to match(/\AHTTP\/1\.1 200.*\r\n\r\nok\z/m)

    expect(first.stop&.exitstatus).to eq(0)
    expect(File.exist?(@path)).to be(false), "the socket file outlived its server"
  end

  it "lets a new server bind the path once the previous one stopped" do
    first = start_on_socket
    expect(first.stop&.exitstatus).to eq(0)
    expect(File.exist?(@path)).to be false

    second = start_on_socket
    expect(get_over_socket).to match(/\AHTTP\/1\.1 200.*\r\n\r\nok\z/m)
    expect(second.stop&.exitstatus).to eq(0)
    expect(File.exist?(@path)).to be false
  end

  it "reuses a stale socket file nobody listens on" do
    UNIXServer.new(@path).close # leaves the file behind, with no listener
    expect(File.socket?(@path)).to be true

    server = start_on_socket
    expect(get_over_socket).to match(/\AHTTP\/1\.1 200.*\r\n\r\nok\z/m)
    expect(server.stop&.exitstatus).to eq(0)
  end

  it "a server whose socket file was replaced does not remove the new server's file when it stops" do
    stale = start_on_socket
    File.delete(@path) # the first server's file is gone (it keeps listening, unreachable)
    fresh = start_on_socket
    expect(get_over_socket).to match(/\AHTTP\/1\.1 200.*\r\n\r\nok\z/m)

    expect(stale.stop&.exitstatus).to eq(0)
    expect(File.socket?(@path)).to be(true), "stopping the stale server removed the live server's socket file"
    expect(get_over_socket).to match(/\AHTTP\/1\.1 200.*\r\n\r\nok\z/m)
    expect(fresh.exited?).to be false
  end
end
